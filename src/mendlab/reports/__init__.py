"""Reports: tables, plots and transcripts people would rather look at."""
