-- Login users. The password is stored only as an argon2id PHC string.
CREATE TABLE IF NOT EXISTS users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email          text        NOT NULL,
    password_hash  text        NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    role           text,
    org_id         uuid,
    permissions    text[]      NOT NULL DEFAULT '{}',
    disabled       boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_idx ON users (lower(email));
