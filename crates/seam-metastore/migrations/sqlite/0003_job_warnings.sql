-- Jobs that succeed with warnings (streams the source skipped) say what needs attention.
ALTER TABLE jobs ADD COLUMN warning_message TEXT;
