-- The schema of github.com/distkit/distkit/stores/postgres, with the
-- default table prefix "distkit_". postgres.Migrate creates it (under any
-- prefix); this file is for those who manage their schema with their own
-- migration tool. Every statement is idempotent. Keys and saga IDs are
-- stored as bytea: any Go string is one, NUL bytes and invalid UTF-8
-- included.

-- Idempotency records: one row per key. deadline is LockedUntil while the
-- key is in progress (done = false) and ExpiresAt once it is done; a row
-- whose deadline has passed is treated as absent.
CREATE TABLE IF NOT EXISTS distkit_idempotency (
	key         bytea       PRIMARY KEY,
	fingerprint bytea       NOT NULL,
	done        boolean     NOT NULL,
	token       bigint      NOT NULL,
	deadline    timestamptz NOT NULL,
	response    bytea
);
CREATE INDEX IF NOT EXISTS distkit_idempotency_deadline ON distkit_idempotency (deadline);
-- Fencing tokens: every claim draws the next value.
CREATE SEQUENCE IF NOT EXISTS distkit_idempotency_token;

-- The saga log: every record in its canonical msgpack encoding, in the
-- order (batch, ord) in which it was appended.
CREATE SEQUENCE IF NOT EXISTS distkit_saga_batch;
CREATE TABLE IF NOT EXISTS distkit_saga_record (
	saga   bytea  NOT NULL,
	batch  bigint NOT NULL,
	ord    int    NOT NULL,
	record bytea  NOT NULL,
	PRIMARY KEY (saga, batch, ord)
);
-- One row per saga: where its first record is, and whether its last
-- record is terminal.
CREATE TABLE IF NOT EXISTS distkit_saga (
	saga     bytea   PRIMARY KEY,
	batch    bigint  NOT NULL,
	ord      int     NOT NULL,
	finished boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS distkit_saga_unfinished ON distkit_saga (batch, ord) WHERE NOT finished;

-- The saga barrier: one row per key and operation (1 action, 2
-- compensation). origin says which operation inserted the row: an action
-- row inserted by a compensation (origin 2) is a null compensation, and
-- blocks the action for good.
CREATE TABLE IF NOT EXISTS distkit_saga_barrier (
	key        bytea       NOT NULL,
	op         smallint    NOT NULL,
	origin     smallint    NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (key, op)
);
