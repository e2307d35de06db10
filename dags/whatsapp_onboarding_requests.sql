-- The requests table of example_whatsapp_scheduled_onboarding (PostgreSQL; portable SQL).
-- [START howto_scheduled_onboarding_table]
CREATE TABLE whatsapp_onboarding_requests (
    request_id      VARCHAR(64)  PRIMARY KEY,
    waba_id         VARCHAR(32),                        -- empty: the connection's waba_id extra
    cc              VARCHAR(8)   NOT NULL,
    phone_number    VARCHAR(32)  NOT NULL,
    verified_name   VARCHAR(75),
    preverified_id  VARCHAR(32),                        -- set: no verification code needed
    status          VARCHAR(16)  NOT NULL DEFAULT 'pending',
    phone_number_id VARCHAR(32),
    error_code      INTEGER,
    error_subcode   INTEGER,
    error_message   TEXT,
    attempts        INTEGER      NOT NULL DEFAULT 0,
    created_at      TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP, -- oldest first, in turns across WABAs
    updated_at      TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX whatsapp_onboarding_requests_open ON whatsapp_onboarding_requests (status, waba_id, created_at);
-- [END howto_scheduled_onboarding_table]
