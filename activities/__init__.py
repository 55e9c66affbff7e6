"""The retryable steps of cairn's workflows."""
