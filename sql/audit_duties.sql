-- Every change of the audit configuration (rules, settings that govern how
-- long the trail is kept) is audited, even with no class audited, with the
-- real actor: the session user, and the role the session acts as rather
-- than the extension owner the SECURITY DEFINER functions run as.  What
-- narrows or shortens the trail is for superusers; a refused change
-- changes nothing.
CREATE EXTENSION pg_opsdata;
CREATE ROLE duties_admin IN ROLE opsdata_admin;
CREATE ROLE duties_super SUPERUSER;
CREATE TABLE shown (last bigint);
INSERT INTO shown VALUES (0);
CREATE FUNCTION trail()
RETURNS TABLE (is_session_user boolean, current_user_name text, command text, objects text[],
			   statement text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM audit.flush();
	RETURN QUERY
		SELECT t.username = session_user, t.current_user_name, t.command, t.objects, t.statement_text
		  FROM audit.trail t
		 WHERE t.entry_id > (SELECT last FROM shown)
		 ORDER BY t.ts, t.entry_id;
	UPDATE shown SET last = (SELECT coalesce(max(entry_id), 0) FROM audit.entries);
END
$$;

SET pg_opsdata.audit = 'none';
SELECT * FROM trail();

-- An administrator widens the trail; the entries name it, not the owner.
SET ROLE duties_admin;
SELECT audit.add_rule('include', class => 'ddl') AS include_rule \gset
SELECT opsdata.set_setting('partition.move_limit', '30');
RESET ROLE;
SELECT * FROM trail();

-- It cannot narrow or shorten it; nothing changes and nothing is recorded.
SET ROLE duties_admin;
SELECT audit.add_rule('exclude', class => 'ddl');
SELECT audit.drop_rule(:include_rule);
SELECT opsdata.set_setting('audit.retention', '1 day');
SELECT opsdata.reset_setting('partition.log_retention');
RESET ROLE;
SELECT action, class FROM audit.rules ORDER BY rule_id;
SELECT key, value FROM opsdata.config ORDER BY key;
SELECT * FROM trail();

-- A superuser role (here through SET ROLE) may; each change is audited.
SET ROLE duties_super;
SELECT audit.add_rule('exclude', role_name => 'duties_admin') AS exclude_rule \gset
SELECT audit.drop_rule(:include_rule);
SELECT opsdata.set_setting('audit.retention', '180 days');
SELECT opsdata.reset_setting('audit.retention');
SELECT opsdata.set_setting('partition.log_retention', '400 days');
RESET ROLE;
SELECT * FROM trail();

-- Out of bounds, even for a superuser.
SELECT opsdata.set_setting('audit.retention', '178000000 years');
SELECT opsdata.set_setting('partition.log_retention', '0');
SELECT * FROM trail();

-- An exclude rule may be dropped by an administrator: the trail widens.
SET ROLE duties_admin;
SELECT audit.drop_rule(:exclude_rule);
RESET ROLE;
SELECT * FROM trail();

-- An internal function called with arguments its callers never pass fails
-- with an error code, as any user-facing function does.
\set VERBOSITY sqlstate
SELECT audit._requeue(0, ARRAY['{}'::jsonb], ARRAY[1, 2]::bigint[], ARRAY[now()]);
\set VERBOSITY default

RESET pg_opsdata.audit;
DROP FUNCTION trail();
DROP TABLE shown;
DROP EXTENSION pg_opsdata;
DROP ROLE duties_admin, duties_super;
