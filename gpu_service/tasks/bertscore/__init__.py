"""BERTScore (`/bertscore`) and the document counts for its idf (`/bertscore/idf`)."""
