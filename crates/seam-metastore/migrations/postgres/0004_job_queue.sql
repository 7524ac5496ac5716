-- The job queue: a job is `pending` until a worker leases it, then `running` under a lease the worker
-- renews; a lease that runs out frees the integration for another worker (the job resumes from the
-- bookmarks committed in the warehouse). At most one pending or running job per integration.
ALTER TABLE jobs ADD COLUMN due_time TEXT;
ALTER TABLE jobs ADD COLUMN worker TEXT;
ALTER TABLE jobs ADD COLUMN lease_until TEXT;
ALTER TABLE jobs ADD COLUMN stop_requested BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE jobs ADD COLUMN progress TEXT;
UPDATE jobs SET status = 'failed', completion_time = start_time,
    error_message = COALESCE(error_message, 'seam stopped while this job ran')
  WHERE status = 'running'
    AND id NOT IN (SELECT MAX(id) FROM jobs WHERE status = 'running' GROUP BY integration_id);
CREATE UNIQUE INDEX jobs_one_active ON jobs(integration_id) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_pending ON jobs(due_time, id) WHERE status = 'pending';
