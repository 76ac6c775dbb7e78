"""Two sentences' phonemes written out, for the in-process speech-synthesis tests (espeak-ng is a process:
they do without it); the bundled voice itself is the `voice` fixture of tests/unit/conftest.py."""

HELLO = "həlˈoʊ, wˈɜːld."
FOX = "ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɑːɡ."
