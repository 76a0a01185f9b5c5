-- A records store made by casebridge at e85777e, the last commit with every migration in one
-- file (migration.rs): its gateway ran once, processed one appservice transaction and
-- stopped. Dumped by `sqlite3 casebridge.db .dump`. Never regenerate it: it stands for the
-- stores offices already have.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE IF NOT EXISTS "seaql_migrations" ( "version" varchar NOT NULL PRIMARY KEY, "applied_at" bigint NOT NULL );
INSERT INTO seaql_migrations VALUES('m2026_11_23_000001_initial',1795973482);
INSERT INTO seaql_migrations VALUES('m2026_11_23_000002_attachments',1795973482);
INSERT INTO seaql_migrations VALUES('m2026_11_23_000003_policies',1795973482);
INSERT INTO seaql_migrations VALUES('m2026_11_23_000004_mail',1795973482);
INSERT INTO seaql_migrations VALUES('m2026_11_23_000005_chain',1795973482);
INSERT INTO seaql_migrations VALUES('m2026_11_23_000006_links',1795973482);
INSERT INTO seaql_migrations VALUES('m2026_11_23_000007_purge_followups',1795973482);
INSERT INTO seaql_migrations VALUES('m2026_11_23_000008_bridge_state',1795973482);
CREATE TABLE IF NOT EXISTS "cases" ( "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "number" varchar NOT NULL UNIQUE, "year" integer NOT NULL, "seq" integer NOT NULL, "team" varchar NOT NULL, "status" varchar NOT NULL, "room_id" varchar NULL, "last_identity_id" bigint NULL, "created_at" timestamp_with_timezone_text NOT NULL , "discreet" boolean NOT NULL DEFAULT FALSE, "blocked" boolean NOT NULL DEFAULT FALSE, "assignee" varchar NULL, "closed_at" timestamp_with_timezone_text NULL, "legal_hold" boolean NOT NULL DEFAULT FALSE, "merged_into" varchar NULL);
CREATE TABLE IF NOT EXISTS "identities" ( "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "case_id" bigint NOT NULL, "instance" varchar NOT NULL, "channel" varchar NOT NULL, "address" varchar NOT NULL, "display_name" varchar NOT NULL, "ghost_localpart" varchar NOT NULL, "joined_at" timestamp_with_timezone_text NULL, "created_at" timestamp_with_timezone_text NOT NULL, "unreachable" varchar NULL, FOREIGN KEY ("case_id") REFERENCES "cases" ("id") );
CREATE TABLE IF NOT EXISTS "messages" ( "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "case_id" bigint NOT NULL, "identity_id" bigint NULL, "direction" varchar NOT NULL, "instance" varchar NOT NULL, "channel" varchar NOT NULL, "upstream_id" varchar NULL, "event_id" varchar NULL, "sender" varchar NULL, "body" text NOT NULL, "html" text NULL, "attachments" json_text NULL, "state" varchar NOT NULL, "error" text NULL, "sent_at" timestamp_with_timezone_text NULL, "received_at" timestamp_with_timezone_text NOT NULL, "relayed_at" timestamp_with_timezone_text NULL, "delivered_at" timestamp_with_timezone_text NULL, "kind" varchar NULL, "mentions" json_text NULL, "subject" varchar NULL, "seq" integer NULL, "prev_hash" varchar NULL, "content_hash" varchar NULL, "hash" varchar NULL, "purged_at" timestamp_with_timezone_text NULL, "replaces" varchar NULL, FOREIGN KEY ("case_id") REFERENCES "cases" ("id") );
CREATE TABLE IF NOT EXISTS "queue" ( "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "target" varchar NOT NULL, "instance" varchar NOT NULL, "message_id" bigint NOT NULL, "case_id" bigint NOT NULL, "attempts" integer NOT NULL, "next_attempt_at" timestamp_with_timezone_text NOT NULL, "last_error" text NULL, "created_at" timestamp_with_timezone_text NOT NULL );
CREATE TABLE IF NOT EXISTS "transactions" ( "txn_id" varchar NOT NULL PRIMARY KEY, "received_at" timestamp_with_timezone_text NOT NULL );
INSERT INTO transactions VALUES('before-the-split','2026-11-29T17:31:24.454151488+00:00');
CREATE TABLE IF NOT EXISTS "attachments" ( "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "message_id" bigint NOT NULL, "position" integer NOT NULL, "filename" varchar NOT NULL, "mime" varchar NOT NULL, "size" bigint NOT NULL, "data" blob NOT NULL, "mxc_uri" varchar NULL, "event_id" varchar NULL, FOREIGN KEY ("message_id") REFERENCES "messages" ("id") );
CREATE TABLE IF NOT EXISTS "marks" ( "key" varchar NOT NULL PRIMARY KEY, "case_id" bigint NOT NULL, "created_at" timestamp_with_timezone_text NOT NULL );
CREATE TABLE IF NOT EXISTS "originals" ( "message_id" bigint NOT NULL PRIMARY KEY, "data" blob NOT NULL, FOREIGN KEY ("message_id") REFERENCES "messages" ("id") );
CREATE TABLE IF NOT EXISTS "invitations" ( "token_hash" varchar NOT NULL PRIMARY KEY, "case_id" bigint NOT NULL, "instance" varchar NOT NULL, "created_by" varchar NOT NULL, "created_at" timestamp_with_timezone_text NOT NULL, "expires_at" timestamp_with_timezone_text NOT NULL, "used_at" timestamp_with_timezone_text NULL, FOREIGN KEY ("case_id") REFERENCES "cases" ("id") );
CREATE TABLE IF NOT EXISTS "purge_followups" ( "id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "case_id" bigint NOT NULL, "room_id" varchar NULL, "event_id" varchar NULL, "mxc_uri" varchar NULL, "attempts" integer NOT NULL DEFAULT 0, "last_error" varchar NULL, "created_at" timestamp_with_timezone_text NOT NULL, "done_at" timestamp_with_timezone_text NULL, FOREIGN KEY ("case_id") REFERENCES "cases" ("id") );
CREATE TABLE IF NOT EXISTS "bridge_state" ( "instance" varchar NOT NULL, "key" varchar NOT NULL, "value" text NOT NULL, "updated_at" timestamp_with_timezone_text NOT NULL, PRIMARY KEY ("instance", "key") );
DELETE FROM sqlite_sequence;
CREATE UNIQUE INDEX "cases_year_seq" ON "cases" ("year", "seq");
CREATE INDEX "cases_room" ON "cases" ("room_id");
CREATE UNIQUE INDEX "identities_address" ON "identities" ("instance", "address");
CREATE UNIQUE INDEX "messages_upstream" ON "messages" ("direction", "instance", "upstream_id");
CREATE UNIQUE INDEX "messages_event" ON "messages" ("event_id");
CREATE INDEX "messages_case" ON "messages" ("case_id", "id");
CREATE INDEX "queue_due" ON "queue" ("target", "instance", "next_attempt_at");
CREATE UNIQUE INDEX "attachments_message" ON "attachments" ("message_id", "position");
CREATE UNIQUE INDEX "messages_case_seq" ON "messages" ("case_id", "seq");
COMMIT;
