"""Run a connection: read it, decide with the policy and the owners, act through its cloud's link, write status once.

This is the only code that runs a connection's lifecycle, the only writer of its status (a merge patch checked
against the resourceVersion it read) and of this shard's finalizer on it (added before anything is linked when
admission did not add it at create, taken off after the delete run). Every source of work asks through the Door
(engine/door.py); the Runner also decides when a connection runs again (a retry, a missing identity looked for
again, the long recheck)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any, cast

import kopf
from pydantic import ValidationError

from porter_identity import GROUP, VERSION, metrics
from porter_identity.api.common import DeletionPolicy
from porter_identity.api.connection import PLURAL, SINGULAR, ServiceIdentityConnection
from porter_identity.api.policy import Keep, Policy
from porter_identity.clouds.base import Change, Result
from porter_identity.config import Settings
from porter_identity.engine import allow, wait
from porter_identity.engine.door import Ask, Door
from porter_identity.engine.index import ClaimKey, Connections, Index
from porter_identity.engine.lifecycle import Lifecycle, Step, recorded
from porter_identity.engine.revoke import Marks
from porter_identity.errors import CloudError
from porter_identity.kube import rest
from porter_identity.kube import status as kstatus
from porter_identity.kube.events import Events
from porter_identity.kube.rest import Kube
from porter_identity.providers.locks import KeyedLocks
from porter_identity.reconcile import backoff, claims, conditions, guard, reconcile_policy
from porter_identity.reconcile.drift import DRIFT_CORRECTED
from porter_identity.reconcile.outcome import NOT_CLAIMING, Action, Outcome, Reason, State, stalled
from porter_identity.reconcile.policy import Decision
from porter_identity.reconcile.reconcile_policy import ReconcilePolicy

KIND = SINGULAR
log = logging.getLogger(__name__)

# A write that finds the object changed is tried again with the new resourceVersion when nothing this run read
# changed (another controller's finalizer, a label); otherwise the connection is run again.
WRITE_ATTEMPTS = 5
# The reason a connection's own watch event gives (created, resumed, its spec changed).
OWN_EVENT = "its spec"
# How long a status this runner wrote counts over the index's older view of it (the watch event is on its way).
WRITTEN_FOR = 60.0


def parse(body: Mapping[str, Any]) -> ServiceIdentityConnection | Outcome:
    try:
        return ServiceIdentityConnection.from_body(body)
    except (ValidationError, ValueError) as err:
        if isinstance(err, ValidationError):
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return stalled(Reason.INVALID_SPEC, f"{where}: {first['msg']}")
        return stalled(Reason.INVALID_SPEC, str(err))


def is_current(conn: ServiceIdentityConnection) -> bool:
    """Status already describes this generation as Ready: nothing to do (no cloud call, no write)."""
    ready = conditions.ready_condition(conn.status.conditions)
    linked = getattr(conn.status, conn.spec.provider.value)
    return (
        ready is not None
        and ready.status == "True"
        and conn.status.observed_generation == conn.metadata.generation
        and linked is not None
    )


def claim_key(conn: ServiceIdentityConnection) -> ClaimKey:
    return (conn.metadata.namespace or "", conn.spec.service_account_name, conn.spec.provider.value)


def _inputs(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a run decides from: a write may land on an object that differs in nothing else."""
    meta = body.get("metadata") or {}
    status = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    pause = (meta.get("annotations") or {}).get(reconcile_policy.ANNOTATION)
    return meta.get("uid"), meta.get("generation"), bool(meta.get("deletionTimestamp")), pause, status


class _Changed(Exception):
    """The object changed in something the run decided from: run it again."""


@dataclass(frozen=True)
class Deleted:
    """A delete run's answer: None delay means the finalizer may come off; otherwise the delete runs again then."""

    delay: float | None
    message: str = ""


class Runner:
    def __init__(self, memo: kopf.Memo, executor: Executor | None, workers: int) -> None:
        self.memo = memo
        self.executor = executor
        self.door = Door(self._run_async, workers)
        self.seen: dict[str, tuple[Any, ...]] = {}  # uid -> (generation, pause) last asked for by its own events
        self.retries: dict[str, int] = {}
        self.missing_since: dict[str, float] = {}
        self.written: dict[str, tuple[float, int]] = {}  # uid -> (when, rank) of the last status written
        self.serialized = KeyedLocks()  # connections naming one ServiceAccount and cloud run one after another
        self.retained_marks: Marks = {}  # ServiceAccounts marked with a retained link, from the watch

    @property
    def settings(self) -> Settings:
        settings: Settings = self.memo.settings
        return settings

    @property
    def owners(self) -> Index[ClaimKey, claims.Claim] | None:
        connections: Connections | None = self.memo.get("connections")
        return None if connections is None else connections.owners

    # ---- asking -------------------------------------------------------------------------------------------------

    def ask(self, uid: str, ask: Ask) -> None:
        self.door.ask(uid, ask)

    def notice(self, body: Mapping[str, Any], finalized: bool = True) -> None:
        """A watch event of the connection itself (on the event loop): ask for a run only when its spec or pause
        changed since the last ask, or this shard's finalizer is missing, and not at all when status already
        describes the spec as Ready (a restart over settled connections runs nothing)."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid"))
        pause = (meta.get("annotations") or {}).get(reconcile_policy.ANNOTATION)
        mark = (meta.get("generation"), pause)
        before = self.seen.get(uid)
        if before == mark and finalized:
            return
        self.seen[uid] = mark
        resumed = before is not None and before[1] != pause  # leaving skip: the link is brought back, drift too
        ask = Ask(
            str(meta.get("namespace") or ""),
            str(meta.get("name") or ""),
            f"{reconcile_policy.ANNOTATION} is now {pause or 'unset'}" if resumed else OWN_EVENT,
            look=resumed,
            drifted=resumed,
            body=body,
        )
        if not resumed and finalized and self._settled(body):
            return
        self.door.ask(uid, ask)

    def _settled(self, body: Mapping[str, Any]) -> bool:
        if self.settings.block_broad_permissions:
            return False  # a role made admin while we were away must lose its link: its permissions are read again
        parsed = parse(body)
        if isinstance(parsed, Outcome) or not is_current(parsed):
            return False
        if reconcile_policy.of((body.get("metadata") or {}).get("annotations"))[0] is ReconcilePolicy.SKIP:
            return False  # the run says it is paused
        decision = allow.check(self.memo, self.memo.get("allowed_identities"), parsed.spec, _ns(parsed))
        if decision.allowed:
            metrics.reconciled(KIND, parsed.spec.provider.value, "UpToDate")
        return decision.allowed

    def forget(self, uid: str) -> None:
        self.seen.pop(uid, None)
        self.retries.pop(uid, None)
        self.missing_since.pop(uid, None)
        self.written.pop(uid, None)
        self.door.cancel_later(uid)

    def ask_namespace(self, namespace: str, why: str, look: bool = True) -> None:
        """`look=False`: only the connections whose status does not already describe their spec as Ready run."""
        owners = self.owners
        if owners is None:
            return
        for key in list(owners):
            if key[0] == namespace:
                for claim in owners.get(key, []):
                    self.door.ask(claim.uid, Ask(namespace, claim.name, why, look=look))

    # ---- running ------------------------------------------------------------------------------------------------

    async def _run_async(self, uid: str, ask: Ask) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run, uid, ask)

    @property
    def finalizer(self) -> str:
        finalizer: str = self.memo.finalizer
        return finalizer

    def run(self, uid: str, ask: Ask) -> Deleted | Outcome | None:
        if ask.observed is not None and self.written.get(uid, (0.0, 0))[0] > ask.observed:
            return None  # the sweep read the cloud before this connection's last run did: what it saw is stale
        body = ask.body
        # The first read may come from the API server's watch cache (the write is checked anyway); a delete's not.
        cached = not ask.deleting
        for _ in range(WRITE_ATTEMPTS):
            try:
                if body is None:
                    body = self._read(ask.namespace, ask.name, cached)
                if body is None or (body.get("metadata") or {}).get("uid") != uid:
                    self.forget(uid)
                    connections: Connections | None = self.memo.get("connections")
                    if connections is not None:
                        connections.forget(uid)  # gone: its DELETED event may still be on its way
                    return None
                meta = body.get("metadata") or {}
                if meta.get("deletionTimestamp"):
                    # Whatever asked (a delete, a recheck timer): a deleting object's run is its delete run.
                    if self.finalizer not in (meta.get("finalizers") or []):
                        return None  # not ours to hold: nothing of this shard's was linked, or it is done
                    return self._delete_run(uid, replace(ask, deleting=True), body)
                return self._run_once(uid, ask, body)
            except _Changed:
                body, cached = None, False
                ask = replace(ask, look=True)
            except Exception as err:  # nothing is dropped: whatever failed, the connection runs again later
                retries = self.retries.get(uid, 0)
                self.retries[uid] = retries + 1
                delay = backoff.delay(retries, self.settings.retry_base_seconds, self.settings.retry_max_seconds)
                expected = isinstance(err, rest.ApiError | CloudError | OSError)  # the API server or a cloud
                (log.warning if expected else log.exception)(
                    f"{ask.namespace}/{ask.name}: {err}; running it again in {delay:.0f} s"
                )
                self.door.later(uid, delay, replace(ask, body=None, look=True))
                return None
        log.warning(f"{ask.namespace}/{ask.name}: changed under {WRITE_ATTEMPTS} runs in a row; asked again")
        self.door.later(uid, self.settings.retry_base_seconds, replace(ask, body=None))
        return None

    def _read(self, namespace: str, name: str, cached: bool = False) -> Mapping[str, Any] | None:
        """`cached`: from the API server's watch cache (resourceVersion=0), no etcd read: cheap under a backlog."""
        kube: Kube = self.memo.kube
        query = {"resourceVersion": "0"} if cached else None
        try:
            found: Mapping[str, Any] = kube.get(rest.path(GROUP, VERSION, PLURAL, namespace, name), query=query)
        except rest.ApiError as err:
            if err.status == 404:
                return None
            raise
        return found

    def _run_once(self, uid: str, ask: Ask, body: Mapping[str, Any]) -> Outcome | None:
        parsed = parse(body)
        if isinstance(parsed, Outcome):
            self._events.post(body, "Warning", parsed.reason.value, parsed.message)
            self._logger(body).warning(parsed.message, extra={"reason": parsed.reason.value})
            self.forget(uid)
            return None
        conn = parsed
        decision = allow.check(self.memo, self.memo.get("allowed_identities"), conn.spec, _ns(conn))
        # The policy decides last: a paused connection keeps its link only while the policy allows it.
        why = "reconcile" if ask.why == OWN_EVENT else f"running it again ({ask.why})"
        if decision.allowed and self._paused(body, why, decision):
            self.door.cancel_later(uid)
            return None
        body = self._finalize(body)
        if not ask.look and decision.allowed and is_current(conn) and not self.settings.block_broad_permissions:
            return None
        refusal = None if decision.allowed else decision.message
        with self.serialized.hold("/".join(claim_key(conn))), metrics.reconciling(KIND, conn.spec.provider.value):
            step = self._apply(conn, refusal, ask.ignoring)
            outcome = _noted(step.result.outcome)
            new = kstatus.next_status(conn, outcome, step.result.privilege, step.linked, step.result.status)
            self._write(body, conn, new, made=step.result.change is not None)
            rank = claims.rank(outcome.state is State.READY, outcome.reason.value, NOT_CLAIMING)
            self.written[uid] = (time.monotonic(), rank)
        self._report(body, conn, replace(step, result=replace(step.result, outcome=outcome)), ask)
        self._pass_on(conn, step)
        self._schedule(uid, ask, outcome)
        return outcome

    def _apply(self, conn: ServiceIdentityConnection, refusal: str | None, ignoring: Iterable[str]) -> Step:
        """Policy, ownership, then the link."""
        lifecycle: Lifecycle = self.memo.lifecycle
        if refusal is None and recorded(conn) is None:
            refusal = self._over_budget(conn)
        step = lifecycle.apply(conn, refusal, self._owner(conn, ignoring))
        if step.result.outcome.state is State.READY:
            # Check after acting: a connection applied at the same moment may have reached the index meanwhile.
            late = self._owner(conn, ignoring)
            if late is not None:
                linked = conn.model_copy(
                    update={
                        "status": kstatus.next_status(conn, step.result.outcome, None, step.linked, step.result.status)
                    }
                )
                return lifecycle.apply(linked, refusal, late)
        return step

    def _claims(self, key: ClaimKey) -> list[claims.Claim]:
        """The index's claims, each with the rank of the status this runner last wrote where the index may not
        have seen that write yet: two connections for one ServiceAccount run one after the other, and the second
        sees what the first wrote."""
        owners = self.owners
        assert owners is not None, "the index is built before the runner"
        now = time.monotonic()
        out = []
        for claim in owners.get(key, []):
            written = self.written.get(claim.uid)
            if written is not None and now - written[0] < WRITTEN_FOR and written[1] != claim.rank:
                claim = claim._replace(rank=written[1])
            out.append(claim)
        return out

    def _owner(self, conn: ServiceIdentityConnection, ignoring: Iterable[str] = ()) -> claims.Claim | None:
        """Another connection that owns this one's ServiceAccount for its cloud, else None."""
        skip = set(ignoring)
        winner = claims.owner(c for c in self._claims(claim_key(conn)) if c.uid not in skip)
        return None if winner is None or winner.uid == conn.metadata.uid else winner

    def _over_budget(self, conn: ServiceIdentityConnection) -> str | None:
        """The policy's per-namespace budget on one identity, for a connection that links nothing yet: counted over
        the connections of its namespace that hold a link (so when the webhook was bypassed, the first keep theirs)."""
        policy: Policy | None = self.memo.policy
        limit = policy.max_links_per_namespace_per_identity if policy is not None else None
        owners = self.owners
        if limit is None or owners is None:
            return None
        ns, provider = _ns(conn), conn.spec.provider.value
        holding = [
            guard.target_named(provider, c.identity)
            for key in list(owners)
            if key[0] == ns and key[2] == provider
            for c in owners.get(key, [])
            if c.rank == claims.HOLDS and c.uid != conn.metadata.uid
        ]
        refused = guard.over_budget(conn.spec, ns, limit, [t for t in holding if t is not None])
        return None if refused is None else refused.message

    def _write(self, body: Mapping[str, Any], conn: ServiceIdentityConnection, new: Any, made: bool = False) -> None:
        """Patch status only on change, checked against the resourceVersion read; a conflict with a write that
        changed nothing this run decided from (another controller's finalizer) is written again on the new version.

        `made`: this run changed the cloud. Its status is then written even when the object changed meanwhile (and
        the connection is run again after): status is where the next run finds what exists, so a link made for a
        spec that changed under the run is moved or removed, never left behind. It says what is linked and for
        which generation, so it is true whatever the new spec asks."""
        doc = new.model_dump(mode="json", by_alias=True)
        if doc == conn.status.model_dump(mode="json", by_alias=True):
            return
        kube: Kube = self.memo.kube
        where = rest.path(GROUP, VERSION, PLURAL, _ns(conn), conn.metadata.name or "")
        version = (body.get("metadata") or {}).get("resourceVersion")
        changed = False
        for _ in range(WRITE_ATTEMPTS):
            try:
                kube.patch(
                    f"{where}/status", {"metadata": {"resourceVersion": version}, "status": doc}, answer_wanted=False
                )
                if changed:
                    raise _Changed
                return
            except rest.ApiError as err:
                if err.status != 409:
                    raise
            fresh = self._read(_ns(conn), conn.metadata.name or "")
            if fresh is None:
                raise _Changed
            if _inputs(fresh) != _inputs(body):
                if not made:
                    raise _Changed
                changed = True
            version = (fresh.get("metadata") or {}).get("resourceVersion")
        raise _Changed

    def _finalize(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """This shard's finalizer on the object before anything is linked (a delete then waits for the delete run);
        the answer is the object as it is now. Admission adds it to most at create (handlers/admission.py); this is
        for the rest (the webhook off or bypassed, a standby of a shard answering, an object from before). A conflict
        runs the connection again on a fresh read."""
        meta = body.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        if self.finalizer in finalizers:
            return body
        try:
            answer: Mapping[str, Any] = self.memo.kube.patch(
                self._where(meta),
                {"metadata": {"finalizers": [*finalizers, self.finalizer], "resourceVersion": meta["resourceVersion"]}},
            )
        except rest.ApiError as err:
            if err.status in (404, 409):
                raise _Changed from err
            raise
        return answer

    def _unfinalize(self, body: Mapping[str, Any]) -> None:
        """Take this shard's finalizer off (the delete run is done); another controller's stay."""
        kube: Kube = self.memo.kube
        for _ in range(WRITE_ATTEMPTS):
            meta = body.get("metadata") or {}
            finalizers = list(meta.get("finalizers") or [])
            if self.finalizer not in finalizers:
                return
            kept = [f for f in finalizers if f != self.finalizer]
            try:
                version = meta["resourceVersion"]
                kube.patch(
                    self._where(meta),
                    {"metadata": {"finalizers": kept, "resourceVersion": version}},
                    answer_wanted=False,
                )
                return
            except rest.ApiError as err:
                if err.status == 404:
                    return
                if err.status != 409:
                    raise
            fresh = self._read(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            if fresh is None:
                return
            body = fresh
        raise _Changed

    @staticmethod
    def _where(meta: Mapping[str, Any]) -> str:
        return rest.path(GROUP, VERSION, PLURAL, str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def _logger(self, body: Mapping[str, Any]) -> logging.LoggerAdapter[Any]:
        """kopf's per-object logger without Events: JSON lines carry the object's kind/name and namespace."""
        return kopf.LocalObjectLogger(body=cast(kopf.Body, body), settings=self.memo.kopf_settings)

    @property
    def _events(self) -> Events:
        events: Events = self.memo.events
        return events

    def _paused(self, body: Mapping[str, Any], why: str, decision: Decision) -> bool:
        """Whether the object's reconcile-policy says skip and the policy grants it; then the Event says what was
        not done, and why. A skip the policy does not grant (the webhook bypassed) is ignored, with a Warning."""
        annotations = (body.get("metadata") or {}).get("annotations")
        pause, warning = reconcile_policy.of(annotations)
        if warning is not None:
            self._events.post(body, "Warning", Action.PAUSED.value, warning)
        if pause is not ReconcilePolicy.SKIP:
            return False
        refused = decision.refuses_keeping(Keep.SKIP)
        if refused is not None:
            message = f"{reconcile_policy.ANNOTATION} skip is ignored: {refused}"
            self._events.post(body, "Warning", Reason.NOT_ALLOWED.value, message)
            self._logger(body).warning(message, extra={"reason": Reason.NOT_ALLOWED.value})
            return False
        message = reconcile_policy.paused_message(why)
        self._events.post(body, "Normal", Action.PAUSED.value, message)
        self._logger(body).info(message, extra={"reason": Action.PAUSED.value})
        return True

    def _report(self, body: Any, conn: ServiceIdentityConnection, step: Step, ask: Ask) -> None:
        """Events and the log line for one run. A run that repaired what the sweep saw changed outside posts a
        DriftCorrected Warning instead of the Normal Event."""
        result = step.result
        provider = conn.spec.provider.value
        post = self._events.post
        metrics.reconciled(KIND, provider, result.outcome.reason.value)
        if guard.protected_namespace(_ns(conn), self.settings) is not None:
            post = _nowhere  # the operator posts nothing in a protected namespace (docs/security.md)
        kstatus.warn_broad(body, conn.status, result.privilege, result.outcome, post)
        before = conditions.ready_condition(conn.status.conditions)
        changed = before is None or (before.reason, before.message) != (
            result.outcome.reason.value,
            result.outcome.message,
        )
        ready = result.outcome.state is State.READY
        where = f"{conn.metadata.namespace}/{conn.metadata.name}"
        if result.change is not None and ready and ask.drifted:
            metrics.DRIFT_CORRECTED.labels(provider).inc()
            message = f"{ask.why}; {result.change.message}; {result.outcome.message}"
            post(body, "Warning", DRIFT_CORRECTED, message)
            self._logger(body).warning(f"{where}: {message}", extra={"reason": DRIFT_CORRECTED, "provider": provider})
            return
        if result.change is not None and ready:
            # One Event for one state change: what was done, and what is true now.
            post(body, "Normal", result.change.reason, f"{result.change.message}; {result.outcome.message}")
        else:
            if result.change is not None:
                post(body, "Normal", result.change.reason, result.change.message)
            if changed:
                post(body, "Normal" if ready else "Warning", result.outcome.reason.value, result.outcome.message)
        if changed or result.change is not None:
            # Rechecks that find nothing new stay quiet: no Event, no status write, no log line above DEBUG.
            logger = self._logger(body)
            (logger.info if ready else logger.warning)(
                f"{where}: {result.outcome.message}",
                extra={"reason": result.outcome.reason.value, "provider": provider},
            )

    def _pass_on(self, conn: ServiceIdentityConnection, step: Step) -> None:
        """Wake the next claimant when this connection stopped claiming, or yielded and removed the link it had
        made (two made at the same moment: the owner may have failed against this one's link meanwhile)."""
        reason = step.result.outcome.reason
        gave_up = reason in NOT_CLAIMING and _claimed(conn)
        yielded = reason is Reason.CONFLICT and step.result.change is not None
        if gave_up or yielded:
            self.wake_next(claim_key(conn), conn.metadata.uid or "")

    def wake_next(self, key: ClaimKey, gone: str) -> None:
        """The owner of a ServiceAccount went away or stopped linking: the next claimant runs at once."""
        owners = self.owners
        if owners is None:
            return
        first = next(iter(claims.waiting(owners.get(key, []), gone)), None)
        if first is not None:
            why = f"connection {gone} no longer links {key[0]}/{key[1]}"
            self.door.ask(first.uid, Ask(key[0], first.name, why, ignoring=frozenset({gone})))

    def _schedule(self, uid: str, ask: Ask, outcome: Outcome) -> None:
        """When this connection runs again: soon and often while what it needs may be appearing, with backoff after
        a retryable failure, at the long recheck while Stalled by something outside the spec."""
        now = time.monotonic()
        waited: float | None = None
        if wait.appearing(outcome):
            waited = now - self.missing_since.setdefault(uid, now)
        else:
            self.missing_since.pop(uid, None)
        retries = self.retries.get(uid, 0)
        if outcome.retryable:
            self.retries[uid] = retries + 1
        else:
            self.retries.pop(uid, None)
        settings = self.settings
        delay = wait.after(
            outcome,
            retries,
            waited,
            settings.retry_base_seconds,
            settings.retry_max_seconds,
            settings.stalled_recheck_seconds,
        )
        if delay is None:
            self.door.cancel_later(uid)
            return
        self.door.cancel_later(uid)  # the new outcome sets the next look, later or sooner
        self.door.later(uid, delay, Ask(ask.namespace, ask.name, "recheck"))

    # ---- deleting -----------------------------------------------------------------------------------------------

    def _delete_run(self, uid: str, ask: Ask, body: Mapping[str, Any]) -> Deleted:
        """The delete, then the finalizer off; or the delete again after the answer's delay."""
        done = self._delete(uid, replace(ask, body=body))
        if done.delay is None:
            self._unfinalize(body)
        else:
            self.door.later(uid, done.delay, Ask(ask.namespace, ask.name, "deleting", deleting=True))
        return done

    def _delete(self, uid: str, ask: Ask) -> Deleted:
        """Remove the cloud link; the finalizer comes off only when the answer's delay is None. The policy decides
        last: a link it no longer allows is removed whatever the connection asks to keep (skip, Retain,
        detach-on-delete)."""
        body = ask.body or self._read(ask.namespace, ask.name)
        if body is None:
            return Deleted(None)
        settings = self.settings
        parsed = parse(body)
        if isinstance(parsed, Outcome):
            if any((body.get("status") or {}).get(p) for p in ("aws", "azure", "gcp")):
                # Something was linked, but the spec no longer says what: keep the finalizer, say how to get out.
                message = f"cannot tell which link to remove ({parsed.message}); fix the spec, or remove the finalizer"
                self._events.post(body, "Warning", parsed.reason.value, message)
                return Deleted(settings.stalled_recheck_seconds, message)
            self.forget(uid)
            return Deleted(None)  # never linked: an unparseable spec is never applied
        conn = parsed
        provider = conn.spec.provider.value
        decision = allow.check(self.memo, self.memo.get("allowed_identities"), conn.spec, _ns(conn))
        annotations = (body.get("metadata") or {}).get("annotations")
        pause = reconcile_policy.of(annotations)[0]
        # The policy decides last: nothing is kept that it no longer allows, or whose keeping it does not grant.
        wanted = reconcile_policy.keeps(annotations, conn.spec.deletion_policy.value)
        refused = {
            keep: decision.message if not decision.allowed else decision.refuses_keeping(keep) for keep in wanted
        }
        refused = {keep: why for keep, why in refused.items() if why is not None}
        if refused:
            why = "; ".join(dict.fromkeys(str(w) for w in refused.values()))
            message = f"the link is removed although the connection asks to keep it: {why}"
            self._events.post(body, "Warning", Reason.NOT_ALLOWED.value, message)
            self._logger(body).warning(message, extra={"reason": Reason.NOT_ALLOWED.value, "provider": provider})
            if Keep.SKIP in refused or Keep.DETACH_ON_DELETE in refused:
                pause = ReconcilePolicy.MANAGE
            if Keep.RETAIN in refused:
                conn = _with_policy(conn, DeletionPolicy.DELETE)
        if pause is ReconcilePolicy.SKIP:
            message = reconcile_policy.paused_message("deleting the cloud link") + " (the link is left as it is)"
            self._events.post(body, "Normal", Action.PAUSED.value, message)
            self._logger(body).info(message, extra={"reason": Action.PAUSED.value, "provider": provider})
            self.forget(uid)
            return Deleted(None)
        if pause is ReconcilePolicy.DETACH_ON_DELETE:
            # Kept exactly as deletionPolicy: Retain keeps it, so the drift sweep never takes it for an orphan.
            conn = _with_policy(conn, DeletionPolicy.RETAIN)
        lifecycle: Lifecycle = self.memo.lifecycle
        with self.serialized.hold("/".join(claim_key(conn))):
            result: Result = lifecycle.delete(conn, self._owner(conn))
            kept = conn.spec.deletion_policy is DeletionPolicy.RETAIN and result.outcome.state is State.READY
            if kept and not allow.check(self.memo, self.memo.get("allowed_identities"), conn.spec, _ns(conn)).allowed:
                # Withdrawn while this delete ran: the namespace's revocation may have looked before the mark was
                # written, so the link goes now rather than at the next sweep.
                result = lifecycle.delete(_with_policy(conn, DeletionPolicy.DELETE), self._owner(conn))
        if result.outcome.state is not State.READY:
            if result.outcome.reason is not Reason.PROGRESSING:
                self._events.post(body, "Warning", result.outcome.reason.value, result.outcome.message)
                self._logger(body).warning(
                    result.outcome.message, extra={"reason": result.outcome.reason.value, "provider": provider}
                )
            # The finalizer stays until the link is gone, whatever the failure.
            retries = self.retries.get(uid, 0)
            self.retries[uid] = retries + 1
            delay = (
                settings.stalled_recheck_seconds
                if result.outcome.state is State.STALLED
                else wait.retry_delay(result.outcome, retries, settings.retry_base_seconds, settings.retry_max_seconds)
            )
            return Deleted(delay, result.outcome.message)
        if pause is ReconcilePolicy.DETACH_ON_DELETE and result.change is not None:
            message = f"{reconcile_policy.ANNOTATION} is detach-on-delete: {result.change.message}"
            result = replace(result, change=Change(Action.DETACHED, message))
        if result.change is not None:
            self._events.post(body, "Normal", result.change.reason, result.change.message)
            self._logger(body).info(result.change.message, extra={"reason": result.change.reason, "provider": provider})
        self.forget(uid)
        self.wake_next(claim_key(conn), uid)
        return Deleted(None)


def _with_policy(conn: ServiceIdentityConnection, policy: DeletionPolicy) -> ServiceIdentityConnection:
    return conn.model_copy(update={"spec": conn.spec.model_copy(update={"deletion_policy": policy})})


def _noted(outcome: Outcome) -> Outcome:
    """What is missing may be on its way (made in the same apply): the message says it is being looked for."""
    if not wait.appearing(outcome) or outcome.message.endswith(wait.WAITING_NOTE):
        return outcome
    return Outcome(outcome.state, outcome.reason, f"{outcome.message}; {wait.WAITING_NOTE}")


def _claimed(conn: ServiceIdentityConnection) -> bool:
    """Whether this connection held or could make its link before this run."""
    ready = conditions.ready_condition(conn.status.conditions)
    return ready is None or ready.status == "True" or ready.reason not in NOT_CLAIMING


def _ns(conn: ServiceIdentityConnection) -> str:
    return conn.metadata.namespace or ""


def _nowhere(body: Any, type: str, reason: str, message: str) -> None:
    """Where Events of connections in a protected namespace go."""
