"""Text tasks: classification, token classification (NER), question answering (SQuAD), feature
extraction; the TF-IDF baseline and the demo classifiers."""
