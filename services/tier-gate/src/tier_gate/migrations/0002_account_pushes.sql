-- The last account-JWT `iat` pushed by any replica (pushes never go back in time).
CREATE TABLE IF NOT EXISTS tg_account_pushes (
    account_pub text PRIMARY KEY,
    iat         bigint NOT NULL
);
