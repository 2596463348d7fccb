-- Failed logins per e-mail, shared by every replica, so throttling holds behind a load balancer.
CREATE TABLE IF NOT EXISTS login_throttle (
    email              text PRIMARY KEY,           -- lower-cased
    failures           integer     NOT NULL,
    window_started_at  timestamptz NOT NULL,
    locked_until       timestamptz
);
