"""Batching across requests: the batch scheduler of each loaded model (`batching`), where a round
of waiting items is cut into batches (`batch_plan`), and computing equal inputs once (`dedupe`)."""
