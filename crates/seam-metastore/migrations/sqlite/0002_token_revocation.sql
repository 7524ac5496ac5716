-- API tokens can be revoked (`seam token revoke`): a revoked token stays listed, the API refuses it.
ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;
