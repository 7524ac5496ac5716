-- Run once by the postgres image, when its volume is first initialised: the warehouse's database,
-- beside the metastore's (POSTGRES_DB, `seam`). Each integration loads into a schema of its own here.
CREATE DATABASE warehouse OWNER seam;
