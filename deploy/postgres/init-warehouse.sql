-- Run once by the postgres image, when its volume is first initialised: the warehouse's database,
-- beside the metastore's (POSTGRES_DB, `seam`). Each integration loads into a schema of its own here.
CREATE DATABASE warehouse OWNER seam;
-- Long texts (comment bodies, audit events) are compressed as PostgreSQL stores them; lz4 does it
-- faster than the default pglz for the same size on disk (a 20k-ticket first load: 8% less wall time,
-- 157 MB against 158; docs/LOADING.md).
ALTER DATABASE warehouse SET default_toast_compression = 'lz4';
