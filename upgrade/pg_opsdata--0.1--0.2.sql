-- pg_opsdata update from 0.1 to 0.2.
--
-- Every schema change of 0.2 has its step here, in the order it was made:
-- an installation updated with ALTER EXTENSION pg_opsdata UPDATE has the
-- same objects as a fresh CREATE EXTENSION of 0.2 (test/tap/003_core_upgrade.pl
-- compares them).
\echo Use "ALTER EXTENSION pg_opsdata UPDATE TO '0.2'" to load this file. \quit
