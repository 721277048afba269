"""tier-gate's SQL migrations, applied in order by the service kit's runner
(`raxx_service_kit.migrations.migrate`, record table `tg_migrations`).

Every file is idempotent (`IF NOT EXISTS`): a database built by tier-gate's old in-code runner
(recorded in `tg_schema_migrations`, integer versions) upgrades by re-running them as no-ops.
Never edit an applied file; add the next number.
"""
