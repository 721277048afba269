"""Pure tier-gate logic: NATS account/user claims, service permissions, revocation sets.

No IO here. Everything is derived from the tier policy (`raxx_contracts.default_policy()`), so
the account JWT written by `init` and the one re-signed for revocation pushes are identical
apart from `revocations` and `iat`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raxx_contracts import AssetClass, Path, TierPolicy, subjects

INBOX_TAG = "inbox"
"""User JWT tag carrying the user's inbox token; scoped templates expand `{{tag(inbox)}}`."""

_INBOX_TEMPLATE = subjects.user_inbox_template(INBOX_TAG)

ACCOUNT_LIMITS: dict[str, Any] = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}
MD_JETSTREAM_LIMITS: dict[str, Any] = {
    "mem_storage": 512 * 1024 * 1024,
    "disk_storage": 8 * 1024 * 1024 * 1024,
    "streams": 64,
    "consumer": 4096,
}
USER_MAX_PAYLOAD = 64 * 1024
"""Users only publish interest requests; a bound keeps a leaked credential from flooding."""


@dataclass(frozen=True)
class Permissions:
    """A NATS permission set (allow-lists only; no deny needed with allow-lists)."""

    pub: tuple[str, ...]
    sub: tuple[str, ...]

    def claims(self) -> dict[str, Any]:
        """The `pub`/`sub` part of user claims."""
        return {"pub": {"allow": list(self.pub)}, "sub": {"allow": list(self.sub)}}


_JS_CLIENT = ("$JS.API.>", "$JS.ACK.>", "$JS.FC.>")
HUB_BUCKET_PREFIX = "MDH"
"""market-data-hub's `MDH_BUCKET_PREFIX` in every deployment: its rights name these streams."""
_HUB_BUCKETS = tuple(f"{HUB_BUCKET_PREFIX}_{n}" for n in ("INTEREST", "LATEST", "LEADER"))
_HUB_STREAMS = tuple(f"KV_{b}" for b in _HUB_BUCKETS)


def _capture_rights() -> tuple[str, ...]:
    """What the hub does on its capture streams, and nothing more (a user JWT's CONNECT line
    must stay under the server's 4 KiB `max_control_line`, so rights are not padded): declare
    and inspect every stream; on the real-time ones also run the delay line's pull consumer
    (create/delete, `MSG.NEXT`; it acks nothing); on the delayed ones read one message (the
    delay line resumes after the last message its delayed stream stored)."""
    rights: list[str] = []
    for path in Path:
        for asset in AssetClass:
            stream = subjects.capture_stream(path, asset)
            rights.append(f"$JS.API.STREAM.*.{stream}")  # CREATE, UPDATE, INFO
            if path is Path.RT:
                rights.append(f"$JS.API.CONSUMER.*.{stream}.>")  # CREATE, INFO, DELETE
                rights.append(f"$JS.API.CONSUMER.*.*.{stream}.>")  # DURABLE.CREATE, MSG.NEXT
            else:
                rights.append(f"$JS.API.STREAM.MSG.GET.{stream}")
    return tuple(rights)


def _js_stream_rights(stream: str) -> tuple[str, ...]:
    """JetStream API subjects that act on one stream (and its consumers) only."""
    return (
        f"$JS.API.STREAM.*.{stream}",  # CREATE, UPDATE, INFO (DELETE/PURGE: own stream only)
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.*.{stream}",  # LIST, NAMES
        f"$JS.API.CONSUMER.*.{stream}.>",  # CREATE, INFO, DELETE
        f"$JS.API.CONSUMER.*.*.{stream}.>",  # DURABLE.CREATE, MSG.NEXT
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    )


_USER_TIERS_STREAM = f"KV_{subjects.USER_TIERS_BUCKET}"
_HUB_JS = (
    "$JS.API.INFO",
    *_capture_rights(),
    *(r for stream in _HUB_STREAMS for r in _js_stream_rights(stream)),
    *(f"$KV.{b}.>" for b in _HUB_BUCKETS),
    # tier-gate's current-tier bucket, read only (the HTTP API refuses superseded tokens).
    f"$JS.API.STREAM.INFO.{_USER_TIERS_STREAM}",
    f"$JS.API.STREAM.MSG.GET.{_USER_TIERS_STREAM}",
    f"$JS.API.DIRECT.GET.{_USER_TIERS_STREAM}",
    f"$JS.API.DIRECT.GET.{_USER_TIERS_STREAM}.>",
)

HUB_RESPONDER = "hub-responder"
"""market-data-hub's user-facing identity: it only receives interest requests and replies."""

SERVICE_PERMISSIONS: dict[str, Permissions] = {
    # market-data-hub, data and state: publishes the capture subjects (`mdcap.>`; the capture
    # streams store them and republish on md.rt/md.delayed, so nobody publishes those), keeps
    # its capture streams and KV buckets (JetStream rights name them), reads MBT's
    # held-options bucket. No publish right on md.*, user inboxes, md.ctl, md.settle or any
    # other service's stream: a reply subject a user chose can never reach this identity's
    # rights (it answers nobody).
    "hub": Permissions(
        pub=(
            f"{subjects.CAPTURE_PREFIX}.>",
            *_HUB_JS,
        ),
        sub=("_INBOX.>", f"$KV.{subjects.HELD_OPTIONS_BUCKET}.>"),
    ),
    # market-data-hub, user-facing: receives `md.ctl.interest.<tier>.<user>` and may publish
    # only into user inboxes (the hub checks each reply lies in the requester's own inbox).
    # No JetStream, no KV, no md.* data.
    HUB_RESPONDER: Permissions(
        pub=(f"{subjects.USER_INBOX_ROOT}.>",),
        sub=(f"{subjects.INTEREST}.>",),
    ),
    # md-replay: receives `md.ctl.replay.<tier>.<user>` and publishes replays only into user
    # inboxes (it checks each lies in the requester's own); reads (never writes, purges or
    # deletes) the real-time capture streams through its own ephemeral consumers; owns the
    # MD_ARCHIVE object store (stream OBJ_MD_ARCHIVE).
    "md-replay": Permissions(
        pub=(
            f"{subjects.USER_INBOX_ROOT}.>",
            "$JS.API.INFO",
            *(
                right
                for stream in (
                    subjects.capture_stream(Path.RT, AssetClass.STOCKS),
                    subjects.capture_stream(Path.RT, AssetClass.OPTIONS),
                )
                for right in (
                    f"$JS.API.STREAM.INFO.{stream}",
                    f"$JS.API.STREAM.MSG.GET.{stream}",
                    f"$JS.API.DIRECT.GET.{stream}",
                    f"$JS.API.DIRECT.GET.{stream}.>",
                    f"$JS.API.CONSUMER.CREATE.{stream}.>",
                    f"$JS.API.CONSUMER.INFO.{stream}.>",
                    f"$JS.API.CONSUMER.DELETE.{stream}.>",
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
                )
            ),
            *_js_stream_rights(f"OBJ_{subjects.ARCHIVE_BUCKET}"),
            f"$O.{subjects.ARCHIVE_BUCKET}.>",
            # nats-py's object store finds its stream by subject (get, list): names only.
            "$JS.API.STREAM.NAMES",
        ),
        sub=(f"{subjects.REPLAY}.>", "_INBOX.>"),
    ),
    # eod-settler: publishes settles into SETTLES and corporate actions into CORPACTIONS
    # (JetStream API for declare/publish/ack), may read the market-data paths and its own
    # settles back.
    "settler": Permissions(
        pub=("md.settle.>", subjects.CORPACTIONS_ANY, *_JS_CLIENT, "_INBOX.>"),
        sub=("md.>", "_INBOX.>"),
    ),
    # broker-handoff: publishes handoff events, may consume tier changes and its own events;
    # a tier change it cannot apply goes to its dead-letter subject.
    "broker-handoff": Permissions(
        pub=(
            subjects.BROKER_HANDOFF_EVENTS,
            subjects.dead_letter("broker-handoff", ">"),
            *_JS_CLIENT,
            "_INBOX.>",
        ),
        sub=(subjects.BROKER_HANDOFF_EVENTS, subjects.BILLING_TIER_CHANGED, "_INBOX.>"),
    ),
    # tier-gate itself (MD account): owns the BILLING stream and its durable consumer, and
    # writes each user's current tier into its KV bucket (read by the hub's HTTP API); a billing
    # event it cannot apply goes to its dead-letter subject.
    "tier-gate": Permissions(
        pub=(
            *_JS_CLIENT,
            f"$KV.{subjects.USER_TIERS_BUCKET}.>",
            subjects.dead_letter("tier-gate", ">"),
        ),
        sub=(subjects.BILLING_TIER_CHANGED, "_INBOX.>"),
    ),
    # dev stand-in for billing: publishes tier changes into the BILLING stream.
    "billing": Permissions(
        pub=(subjects.BILLING_TIER_CHANGED, "$JS.API.STREAM.INFO.>", "_INBOX.>"),
        sub=("_INBOX.>",),
    ),
    # dev-admin (dev only): an operator's read-only view of the MD account.
    "dev-admin": Permissions(
        pub=(
            "$JS.API.INFO",
            "$JS.API.STREAM.NAMES",
            "$JS.API.STREAM.LIST",
            "$JS.API.STREAM.INFO.>",
            "$JS.API.STREAM.MSG.GET.>",
            "$JS.API.DIRECT.GET.>",
            "$JS.API.CONSUMER.CREATE.>",
            "$JS.API.CONSUMER.INFO.>",
            "$JS.API.CONSUMER.NAMES.>",
            "$JS.API.CONSUMER.LIST.>",
            "$JS.API.CONSUMER.MSG.NEXT.>",
            "$JS.API.CONSUMER.DELETE.>",
            "$JS.ACK.>",
            "_INBOX.>",
        ),
        sub=(">",),
    ),
}
SYS_SERVICE = "tier-gate-sys"
"""tier-gate's system-account user: may only push account claim updates."""
SYS_PERMISSIONS = Permissions(pub=("$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",), sub=("_INBOX.>",))
DEV_ONLY_SERVICES = frozenset({"billing", "dev-admin"})


def service_permissions(name: str, dev: bool) -> Permissions:
    """A service identity's permissions; in dev, tier-gate may also announce tier changes.

    The dev identity route records a tier "as billing would", so it publishes the change on
    `billing.tier.changed` for the other services that keep a tier projection (broker-handoff).
    """
    perms = SERVICE_PERMISSIONS[name]
    if dev and name == "tier-gate":
        return Permissions(pub=(*perms.pub, subjects.BILLING_TIER_CHANGED), sub=perms.sub)
    return perms


def tier_template(policy: TierPolicy, tier: str) -> dict[str, Any]:
    """The scoped signing key template of `tier`: what every user JWT it signs may do."""
    rule = policy.rule(tier)
    return {
        "sub": {"allow": [*policy.subscribe_allow(tier), _INBOX_TEMPLATE]},
        "pub": {
            "allow": [
                subjects.interest_template(tier, INBOX_TAG),
                _INBOX_TEMPLATE,
                # gap recovery / start-from-time: direct gets on exactly the capture streams of
                # the paths this tier may subscribe to (the server refuses any other stream)
                *(subjects.direct_get(s) for s in policy.readable_streams(tier)),
                subjects.replay_template(tier, INBOX_TAG),
            ]
        },
        "subs": rule.max_subscriptions,
        "data": -1,
        "payload": USER_MAX_PAYLOAD,
    }


def account_claims(
    name: str,
    account_pub: str,
    *,
    jetstream: bool,
    scoped_keys: Mapping[str, str] | None = None,
    policy: TierPolicy | None = None,
    revocations: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Account JWT claims; `scoped_keys` maps tier -> signing public key (needs `policy`)."""
    limits = dict(ACCOUNT_LIMITS)
    if jetstream:
        limits.update(MD_JETSTREAM_LIMITS)
    nats: dict[str, Any] = {"type": "account", "version": 2, "limits": limits}
    if scoped_keys:
        if policy is None:
            raise ValueError("scoped keys need the tier policy")
        nats["signing_keys"] = [
            {
                "kind": "user_scope",
                "key": key,
                "role": tier,
                "template": tier_template(policy, tier),
            }
            for tier, key in sorted(scoped_keys.items())
        ]
    if revocations:
        nats["revocations"] = dict(sorted(revocations.items()))
    return {"sub": account_pub, "name": name, "nats": nats}


def operator_claims(operator_pub: str, signing_pub: str, system_account: str) -> dict[str, Any]:
    """Operator JWT claims with one signing key (the one that signs accounts)."""
    return {
        "sub": operator_pub,
        "name": "raxx",
        "nats": {
            "type": "operator",
            "version": 2,
            "signing_keys": [signing_pub],
            "system_account": system_account,
        },
    }


def service_user_claims(name: str, user_pub: str, perms: Permissions) -> dict[str, Any]:
    """A service user's claims (signed by the account key itself, explicit permissions)."""
    nats: dict[str, Any] = {"type": "user", "version": 2, **perms.claims()}
    nats.update({"subs": -1, "data": -1, "payload": -1})
    return {"sub": user_pub, "name": name, "nats": nats}


def user_claims(
    *, user_id: str, user_pub: str, account_pub: str, expires_at: int
) -> dict[str, Any]:
    """An end user's claims, signed by a tier's scoped key: no permissions of its own.

    The template supplies every permission; the `inbox:<token>` tag lets the template allow
    exactly this user's inbox (`{{tag(inbox)}}`).
    """
    return {
        "sub": user_pub,
        "name": user_id,
        "exp": expires_at,
        "nats": {
            "type": "user",
            "version": 2,
            "issuer_account": account_pub,
            "tags": [f"{INBOX_TAG}:{subjects.user_token(user_id)}"],
        },
    }


def granted(policy: TierPolicy, tier: str, user_id: str) -> dict[str, Any]:
    """The `subjects` part of a token response: what the credential allows."""
    inbox = subjects.user_inbox_prefix(user_id)
    interest = subjects.interest(tier, subjects.user_token(user_id))
    replay = subjects.replay(tier, subjects.user_token(user_id))
    streams = list(policy.readable_streams(tier))
    return {
        "subscribe": [*policy.subscribe_allow(tier), f"{inbox}.>"],
        "publish": [interest, f"{inbox}.>", *(subjects.direct_get(s) for s in streams), replay],
        "interest": interest,
        "streams": streams,
        "replay": replay,
        "inbox_prefix": inbox,
        "max_subscriptions": policy.rule(tier).max_subscriptions,
        "paths": {str(a): str(policy.stream_path(tier, a)) for a in AssetClass},
    }


def is_downgrade(policy: TierPolicy, old: str, new: str) -> bool:
    """Whether moving from `old` to `new` takes something away."""
    return policy.rank(new) < policy.rank(old)


def tiers_above(policy: TierPolicy, tier: str) -> tuple[str, ...]:
    """Tiers ranked above `tier`: their credentials must die on a downgrade to `tier`."""
    rank = policy.rank(tier)
    return tuple(t for t in policy.tier_order if policy.rank(t) > rank)
