"""The API stand-in's storage: objects, resourceVersions and the watch events every write sends.

Writes behave as kube-apiserver's do where the operator relies on them: server-set metadata, the
status subresource split, merge and JSON patches, optimistic concurrency, finalizers. The layer
above (`standin_reads`) lists and watches; `api_standin` serves HTTP.
"""

from __future__ import annotations

import collections
import random
import uuid
from typing import Any

import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import k8s_dicts, references

from webhook_operator.testing.api_standin_faults import conflict_message
from webhook_operator.testing.standin_requests import Obj, Reject, Watch, WatchEvent, merge_patch, timestamp

CRD_RESOURCE = references.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what kube-apiserver draws generateName suffixes from
SERVER_META = "uid resourceVersion generation creationTimestamp deletionTimestamp deletionGracePeriodSeconds"


@attrs.define(kw_only=True)
class StandinStorage(kmock.KubernetesEmulator):
    keep_history: bool = False  # True: kmock's per-object version history (memory grows)
    watch_log_size: int = 10_000  # events kept for watches resuming from a resourceVersion

    _rv: int = attrs.field(default=0, init=False)
    _log: collections.deque[WatchEvent] = attrs.field(factory=collections.deque, init=False)
    _dropped_rv: int = attrs.field(default=0, init=False)
    _watches: dict[references.resource, set[Watch]] = attrs.field(init=False)
    # resource -> its stored objects by key: a LIST reads one resource's objects, as the real API
    # server's per-resource watch cache does, not every object of every resource
    _by_resource: dict[references.resource, dict[Any, k8s_dicts.Object]] = attrs.field(init=False)
    _known: dict[tuple[str, str, str], references.resource] = attrs.field(factory=dict, init=False)
    _crds: set[references.resource] = attrs.field(factory=set, init=False)

    def _resolve_key(self, resource: references.resource) -> references.resource:
        """The canonical resource instance for a served resource (404 for unknown ones)."""
        triple = (resource.group or "", resource.version or "", resource.plural or "")
        if triple not in self._known:
            if resource not in self.resources:
                raise Reject(404, "the server could not find the requested resource")
            self._known[triple] = resource
        return self._known[triple]

    def _key(self, resource: references.resource, namespace: str | None, name: str) -> Any:
        return (resource, namespace, name)

    def _current(self, key: Any) -> Obj | None:
        obj = self._objects._objects.get(key)
        return None if obj is None or obj.deleted else obj.last.raw

    def _reject(self, code: int, resource: references.resource, name: str, what: str, **kw: Any) -> Reject:
        """A failure about one object, worded and detailed as kube-apiserver does it."""
        details = {"name": name, "group": resource.group, "kind": resource.plural}
        return Reject(code, f"{self._what(resource, name)} {what}", **kw, **details)

    def _what(self, resource: references.resource, name: str | None) -> str:
        plural = f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)
        return f'{plural} "{name}"' if name else plural

    def _commit(self, resource: references.resource, key: Any, type_: str, obj: Obj) -> Obj:
        """Give `obj` (with its own new metadata dict) the next resourceVersion, store, announce."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        stored = self._objects._objects.get(key)
        if type_ == "DELETED":
            if self.keep_history and stored is not None:
                stored.history.append(obj)
                stored.delete()
            else:
                self._objects._objects.pop(key, None)
                self._by_resource[key[0]].pop(key, None)
        elif self.keep_history and stored is not None:
            stored.history.append(obj)
        else:
            self._objects._objects[key] = self._by_resource[key[0]][key] = k8s_dicts.Object(obj)
        event = WatchEvent(self._rv, resource, type_, obj)
        if len(self._log) == self._log.maxlen:
            self._dropped_rv = self._log[0].rv
        self._log.append(event)
        for watch in self._watches.get(resource, ()):
            if watch.match(obj):
                watch.queue.put_nowait(event)
        return obj

    def _create(self, resource: references.resource, namespace: str | None, body: Any) -> Obj:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise Reject(400, "the body of a create must be a JSON object with object metadata")
        meta = body.get("metadata") or {}
        if meta.get("namespace") not in (None, namespace) and self.resources[resource].namespaced:
            raise Reject(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        return self._store_new(resource, namespace, body)

    def _store_new(self, resource: references.resource, namespace: str | None, body: Obj) -> Obj:
        info = self.resources[resource]
        meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in SERVER_META.split()}
        name = meta.get("name")
        while not name and meta.get("generateName"):
            candidate = meta["generateName"] + "".join(random.choices(NAME_CHARS, k=5))
            name = None if self._current(self._key(resource, namespace, candidate)) else candidate
        if not name:
            raise Reject(422, "metadata.name: Required value: name or generateName is required")
        key = self._key(resource, namespace, name)
        if self._current(key) is not None:
            raise self._reject(409, resource, name, "already exists", reason="AlreadyExists")
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=timestamp())
        if info.namespaced:
            meta["namespace"] = namespace
        if self._has_generation(resource):
            meta["generation"] = 1
        version = f"{resource.group}/{resource.version}" if resource.group else resource.version
        obj = {"apiVersion": version, "kind": info.kind, **body, "metadata": meta}
        obj.update(apiVersion=version, kind=info.kind)
        if "status" in info.subresources and resource != CRD_RESOURCE:
            obj.pop("status", None)  # a create cannot set the status
        return self._commit(resource, key, "ADDED", obj)

    def _has_generation(self, resource: references.resource) -> bool:
        return resource in self._crds or "status" in self.resources[resource].subresources

    def _update(
        self,
        resource: references.resource,
        key: Any,
        old: Obj,
        content_type: str,
        data: Any,
        verb: str,
        sub: str | None,
    ) -> Obj:
        info = self.resources[resource]
        patched = self._patched(resource, old, content_type, data) if verb == "patch" else data
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata", {}), dict):
            raise Reject(400, "the object must be a JSON object with object metadata")
        old_meta, meta = old["metadata"], dict(patched.get("metadata") or {})
        rv = meta.get("resourceVersion")
        if verb == "update" and not rv and resource in self._crds:
            raise Reject(422, "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
        if rv and rv != old_meta.get("resourceVersion"):
            raise Reject(409, conflict_message(self._what(resource, key[2])), reason="Conflict")
        if meta.get("name", key[2]) != key[2]:
            raise Reject(400, f"the name of the object ({meta['name']}) does not match the name on the URL")
        has_status = "status" in info.subresources
        if sub == "status":  # only .status changes, whatever else the request says
            new = {k: v for k, v in old.items() if k != "status"}
            new["metadata"] = dict(old_meta)
            if "status" in patched:
                new["status"] = patched["status"]
        else:
            new = {k: v for k, v in patched.items() if k != "status" or not has_status}
            if has_status and "status" in old:
                new["status"] = old["status"]
            for field in (*SERVER_META.split(), "name", "namespace"):
                meta.pop(field, None)
                if field in old_meta:
                    meta[field] = old_meta[field]
            new.update(metadata=meta, apiVersion=old["apiVersion"], kind=old["kind"])
            if old_meta.get("deletionTimestamp") and set(meta.get("finalizers", [])) - set(
                old_meta.get("finalizers", [])
            ):
                raise Reject(
                    422,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the "
                    "object is being deleted",
                    reason="Forbidden",
                )
            skipped = ("metadata", "status") if has_status else ("metadata",)
            if "generation" in meta and {k: v for k, v in new.items() if k not in skipped} != {
                k: v for k, v in old.items() if k not in skipped
            }:
                meta["generation"] = old_meta["generation"] + 1
        if new == old:
            return old  # a no-op write: no new resourceVersion, no watch event
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._commit(resource, key, "DELETED", new)  # the last finalizer is gone
        return self._commit(resource, key, "MODIFIED", new)

    def _patched(self, resource: references.resource, old: Obj, content_type: str, data: Any) -> Any:
        if content_type == "application/strategic-merge-patch+json" and resource not in self._crds:
            content_type = "application/merge-patch+json"  # close enough for built-ins we touch
        if content_type == "application/merge-patch+json":
            if not isinstance(data, dict):
                raise Reject(400, "a merge patch must be a JSON object")
            return merge_patch(old, data)
        if content_type == "application/json-patch+json":
            if not isinstance(data, list) or not all(isinstance(op, dict) for op in data):
                raise Reject(400, "a JSON patch must be a JSON array of operation objects")
            try:
                return jsonpatch.JsonPatch(data).apply(old)
            except (
                jsonpatch.JsonPatchException,
                jsonpointer.JsonPointerException,
                KeyError,
                TypeError,
                ValueError,
            ) as e:
                raise Reject(422, f"the JSON patch could not be applied: {e}") from e
        raise Reject(
            415,
            f"the body of the request was in an unknown format - accepted media types "
            f"include: application/json-patch+json, application/merge-patch+json"
            f"{'' if resource in self._crds else ', application/strategic-merge-patch+json'}"
            f" (got {content_type!r})",
        )

    def _delete(self, resource: references.resource, key: Any, options: Any) -> Obj:
        old = self._current(key)
        if old is None:
            raise self._reject(404, resource, key[2], "not found")
        meta = old["metadata"]
        wanted = options.get("preconditions") or {} if isinstance(options, dict) else {}
        for field in ("uid", "resourceVersion"):
            if wanted.get(field) and wanted[field] != meta.get(field):
                raise Reject(
                    409,
                    f"Precondition failed: {field} in precondition: {wanted[field]}, "
                    f"{field} in object meta: {meta.get(field)}",
                )
        if meta.get("deletionTimestamp"):
            return old
        new = {**old, "metadata": dict(meta)}
        if meta.get("finalizers"):
            new["metadata"].update(deletionTimestamp=timestamp(), deletionGracePeriodSeconds=0)
            return self._commit(resource, key, "MODIFIED", new)
        return self._commit(resource, key, "DELETED", new)
