-- The e-mail lock grows like the pair lock, and it does not lock out the owner.
--
-- Before: the per-e-mail lock started from zero after each lock (about 50 guesses a minute,
-- for ever), and it refused everyone, the owner at home too. Now each key says whether its lock
-- grows (doubling up to the maximum) and whether it is waivable: a waivable lock (the
-- e-mail's) lets an attempt through when that attempt's pair (address, e-mail; the first key)
-- has not failed within the window and never locked. Such an attempt is counted by its other
-- keys only, so a wrong password from a fresh address makes that address part of the failures
-- and the lock holds it from then on; the owner, who logs in from an address that never
-- guessed wrong, gets in. The rule, in words: while an e-mail is locked, every address that
-- has not failed for it may try once per window.
DROP FUNCTION IF EXISTS login_throttle_reserve(text[], integer[], boolean[], interval, interval, interval);

CREATE FUNCTION login_throttle_reserve(
    p_keys text[], p_limits integer[], p_grows boolean[], p_waivable boolean[],
    p_window interval, p_lockout interval, p_max_lockout interval)
RETURNS TABLE (key text, allowed boolean, locked_until timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    t timestamptz := now();
    r login_throttle%ROWTYPE;
    order_ix integer[];
    refused boolean := false;
    pair_clean boolean;
    waived boolean[] := array_fill(false, ARRAY[array_length(p_keys, 1)]);
BEGIN
    SELECT array_agg(s.i ORDER BY p_keys[s.i]) INTO order_ix
      FROM generate_subscripts(p_keys, 1) AS s(i);
    FOREACH i IN ARRAY order_ix LOOP
        INSERT INTO login_throttle (key, failures, window_started_at, expires_at)
        VALUES (p_keys[i], 0, t, t + p_window)
        ON CONFLICT ON CONSTRAINT login_throttle_pkey DO NOTHING;
        PERFORM 1 FROM login_throttle l WHERE l.key = p_keys[i] FOR UPDATE;
    END LOOP;
    SELECT (l.failures = 0 OR l.window_started_at + p_window <= t)
           AND (l.locks = 0 OR l.locked_until < t - p_window)
      INTO pair_clean
      FROM login_throttle l WHERE l.key = p_keys[1];
    FOREACH i IN ARRAY order_ix LOOP
        SELECT * INTO r FROM login_throttle l WHERE l.key = p_keys[i];
        IF r.locked_until > t THEN
            IF p_waivable[i] AND pair_clean THEN
                waived[i] := true;
            ELSE
                refused := true;
                key := p_keys[i]; allowed := false; locked_until := r.locked_until;
                RETURN NEXT;
            END IF;
        END IF;
    END LOOP;
    IF refused THEN
        RETURN;
    END IF;
    FOREACH i IN ARRAY order_ix LOOP
        IF waived[i] THEN
            -- The lock stands for everyone else; this attempt is counted by the other keys.
            key := p_keys[i]; allowed := true; locked_until := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT * INTO r FROM login_throttle l WHERE l.key = p_keys[i];
        IF r.locked_until IS NOT NULL AND r.locked_until < t - p_window THEN
            r.locks := 0;  -- a lock long ago no longer makes the next one longer
        END IF;
        IF r.window_started_at + p_window <= t OR r.locked_until IS NOT NULL THEN
            r.failures := 0;  -- a new window, or the lock has ended: count afresh
            r.window_started_at := t;
            r.locked_until := NULL;
        END IF;
        r.failures := r.failures + 1;
        IF r.failures >= p_limits[i] THEN
            r.locked_until := t + CASE
                WHEN p_grows[i] THEN LEAST(p_lockout * power(2, LEAST(r.locks, 20)),
                                           GREATEST(p_max_lockout, p_lockout))
                ELSE p_lockout END;
            r.locks := r.locks + 1;
        END IF;
        UPDATE login_throttle l
           SET failures = r.failures, window_started_at = r.window_started_at,
               locked_until = r.locked_until, locks = r.locks,
               expires_at = GREATEST(r.window_started_at, COALESCE(r.locked_until, t)) + p_window
         WHERE l.key = p_keys[i];
        key := p_keys[i]; allowed := true; locked_until := r.locked_until;
        RETURN NEXT;
    END LOOP;
END;
$$;
