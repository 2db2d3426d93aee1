// A Standard Webhooks receiver for webhook-operator, in Express.
//
// For every POST /webhooks:
//
// 1. Verify webhook-id / webhook-timestamp / webhook-signature over the raw body bytes with the
//    official `standardwebhooks` library (v1, HMAC) or Node's crypto (v1a, ed25519). A bad signature, a missing header or a timestamp more
//    than 5 minutes from now answers 401, and the request is never processed.
// 2. Drop duplicates: the operator sends the same webhook-id on every retry of one event, so an
//    id seen before answers 200 without processing the event again.
// 3. Acknowledge fast: the event goes into a bounded in-process queue, the request answers 202
//    at once, and an async worker processes the event after the response.
// 4. When the queue is full, answer 503 with Retry-After and do NOT remember the id, so that the
//    operator's retry (same webhook-id) is processed normally.
//
// Environment: WEBHOOK_SECRET (the Secret's signingKey "whsec_...") and/or WEBHOOK_PUBLIC_KEYS
// (the subscription's status.signing.publicKeys "whpk_...", for whsk_ keys), HOST (default
// 127.0.0.1), PORT (default 3000), QUEUE_SIZE (1000), RETRY_AFTER_SECONDS (5),
// DEDUP_TTL_SECONDS (86400), DEDUP_MAX_ENTRIES (100000), MAX_BODY_BYTES (2 MiB),
// PROCESS_DELAY_MS (0), PROCESSED_LOG (unset). Run it with `node server.js`.

"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const express = require("express");
const { Webhook } = require("standardwebhooks");

function envInt(name, fallback) {
  const value = (process.env[name] || "").trim();
  if (value === "") return fallback;
  const parsed = Number.parseInt(value, 10);
  if (Number.isNaN(parsed)) throw new Error(`${name} must be an integer, got ${JSON.stringify(value)}`);
  return parsed;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Signature verification.
// ---------------------------------------------------------------------------------------------
// v1 (HMAC, WEBHOOK_SECRET) goes through the official `standardwebhooks` library; v1a (ed25519,
// WEBHOOK_PUBLIC_KEYS: the subscription's status.signing.publicKeys) through Node's own crypto.
// One verifying signature is enough: during a rotation the operator sends two.
const TOLERANCE_SECONDS = 5 * 60; // as the standardwebhooks library: older requests are replays

function publicKeyObject(whpk) {
  if (!whpk.startsWith("whpk_")) throw new Error("a public key starts with whpk_");
  const raw = Buffer.from(whpk.slice("whpk_".length), "base64");
  if (raw.length !== 32) throw new Error("a whpk_ key is 32 bytes of base64");
  return crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
}

function verifyV1a(keys, body, headers) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"] || "";
  if (!id || !/^[0-9]+$/.test(timestamp)) throw new Error("missing required headers");
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) {
    throw new Error("message timestamp too old or too new");
  }
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]);
  for (const entry of (headers["webhook-signature"] || "").split(" ")) {
    const [version, encoded] = entry.split(",", 2);
    if (version !== "v1a" || !encoded) continue;
    const signature = Buffer.from(encoded, "base64");
    if (keys.some((key) => crypto.verify(null, signed, key, signature))) return;
  }
  throw new Error("no matching signature found");
}

function loadWebhook() {
  const secret = (process.env.WEBHOOK_SECRET || "").trim();
  const publicKeys = (process.env.WEBHOOK_PUBLIC_KEYS || "").split(/[\s,]+/).filter(Boolean);
  if (!secret && publicKeys.length === 0) {
    console.error(
      "set WEBHOOK_SECRET (the signingKey of the subscription's Secret, whsec_...) or " +
        "WEBHOOK_PUBLIC_KEYS (its status.signing.publicKeys, whpk_...)",
    );
    process.exit(2);
  }
  let hmac = null;
  let keys = [];
  try {
    hmac = secret ? new Webhook(secret) : null;
    keys = publicKeys.map(publicKeyObject);
  } catch (err) {
    console.error(`WEBHOOK_SECRET (whsec_<base64>) or WEBHOOK_PUBLIC_KEYS (whpk_<base64>) is not valid: ${err.message}`);
    process.exit(2);
  }
  return {
    verify(body, headers, options) {
      if (hmac) {
        try {
          return hmac.verify(body, headers, options);
        } catch (err) {
          if (keys.length === 0) throw err;
        }
      }
      verifyV1a(keys, body, headers);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Deduplication: a bounded (LRU) and expiring (TTL) set of webhook-ids, in memory.
//
// In production, with more than one process or replica, use a shared store instead, with the
// same two operations:
//   - Redis:    reserve = SET dedup:<webhook-id> 1 NX EX <ttl>  (OK only for the first caller)
//               release = DEL dedup:<webhook-id>
//   - Database: reserve = INSERT INTO processed_webhooks (webhook_id) ... with a UNIQUE
//               constraint on webhook_id, in the same transaction that stores the work;
//               a unique violation means "duplicate".
// The TTL should outlive the operator's whole retry window for one event (the sum of its
// backoff delays over retry.maxAttempts, each at most retry.maxDelaySeconds).
// ---------------------------------------------------------------------------------------------
class SeenIds {
  constructor(maxEntries, ttlSeconds) {
    this.maxEntries = Math.max(1, maxEntries);
    this.ttlMs = ttlSeconds * 1000;
    this.expiry = new Map(); // insertion order = least recently seen first
  }

  // Remember the id; false if it is already remembered (a duplicate).
  reserve(id) {
    const now = Date.now();
    const expires = this.expiry.get(id);
    this.expiry.delete(id);
    if (expires !== undefined && expires > now) {
      this.expiry.set(id, expires); // most recently seen now
      return false;
    }
    this.expiry.set(id, now + this.ttlMs);
    while (this.expiry.size > this.maxEntries) {
      this.expiry.delete(this.expiry.keys().next().value);
    }
    return true;
  }

  // Forget the id, so that the next delivery of it is processed (used with 503).
  release(id) {
    this.expiry.delete(id);
  }

  get size() {
    return this.expiry.size;
  }
}

// ---------------------------------------------------------------------------------------------
// The work queue: bounded, drained by one async worker after the response was sent.
//
// It lives in memory, so events that were acknowledged but not yet processed are lost if the
// process dies. When that matters, put the event into a durable queue (a Redis stream, BullMQ,
// SQS, a database "outbox" table, ...) before answering 2xx, and process it from there.
// CPU-heavy processing would block the event loop (and so the 2xx answers): move it to
// worker_threads or a separate worker process.
// ---------------------------------------------------------------------------------------------
class WorkQueue {
  constructor(maxSize, handler) {
    this.maxSize = Math.max(1, maxSize);
    this.handler = handler;
    this.items = [];
    this.busy = false;
    this.idleWaiters = [];
  }

  // Queue the event without waiting; false when the queue is full.
  offer(id, event) {
    if (this.items.length >= this.maxSize) return false;
    this.items.push({ id, event });
    if (!this.busy) setImmediate(() => this.run());
    return true;
  }

  get size() {
    return this.items.length;
  }

  async run() {
    if (this.busy) return;
    this.busy = true;
    while (this.items.length > 0) {
      const { id, event } = this.items.shift();
      try {
        await this.handler(id, event);
      } catch (err) {
        // The event was acknowledged already, so the operator will not send it again:
        // log it (or park it in a dead-letter store) and go on with the next one.
        console.error(`processing webhook ${id} failed:`, err);
      }
    }
    this.busy = false;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  // Resolves when everything queued has been processed (on shutdown).
  idle() {
    if (!this.busy && this.items.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}

// ---------------------------------------------------------------------------------------------
// Your business logic goes here. It runs after the 202 was sent.
// `event` is the body the operator sent: {"type": ..., "timestamp": ..., "data": {...}}.
// ---------------------------------------------------------------------------------------------
const PROCESS_DELAY_MS = envInt("PROCESS_DELAY_MS", 0);
const PROCESSED_LOG = process.env.PROCESSED_LOG || "";

async function processEvent(webhookId, event) {
  if (PROCESS_DELAY_MS > 0) await sleep(PROCESS_DELAY_MS); // simulated work
  console.log(`processed ${webhookId} ${event.type}`);
  recordProcessed({
    receiver: "express",
    id: webhookId,
    type: event.type,
    timestamp: event.timestamp,
    data: event.data,
  });
}

// Appends one JSON line per processed event to the file PROCESSED_LOG names, if set (tests).
function recordProcessed(entry) {
  if (!PROCESSED_LOG) return;
  fs.appendFileSync(PROCESSED_LOG, JSON.stringify({ ...entry, processed_at: Date.now() / 1000 }) + "\n");
}

// ---------------------------------------------------------------------------------------------
// The HTTP side.
// ---------------------------------------------------------------------------------------------
const RETRY_AFTER_SECONDS = envInt("RETRY_AFTER_SECONDS", 5);
const webhook = loadWebhook();
const seen = new SeenIds(envInt("DEDUP_MAX_ENTRIES", 100000), envInt("DEDUP_TTL_SECONDS", 86400));
const work = new WorkQueue(envInt("QUEUE_SIZE", 1000), processEvent);

const app = express();
app.disable("x-powered-by");

// express.raw keeps the body as the exact bytes that were signed: never verify re-serialized JSON.
const rawBody = express.raw({ type: () => true, limit: envInt("MAX_BODY_BYTES", 2 * 1024 * 1024) });

app.post("/webhooks", rawBody, (req, res) => {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  try {
    // jsonParse: false, so that a signed body that is not JSON is a 400 below, not a 401.
    webhook.verify(body, req.headers, { jsonParse: false });
  } catch (err) {
    console.warn(`rejected webhook ${JSON.stringify(req.get("webhook-id"))}: ${err.message}`);
    return res.status(401).json({ error: "invalid signature" }); // never processed
  }
  const webhookId = req.get("webhook-id");

  let event;
  try {
    event = JSON.parse(body.toString("utf8"));
  } catch {
    return res.status(400).json({ error: "body is not JSON" }); // authentic but unusable
  }
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    return res.status(400).json({ error: "body is not a JSON object" });
  }

  if (!seen.reserve(webhookId)) {
    return res.status(200).json({ status: "duplicate", id: webhookId }); // don't process again
  }
  if (!work.offer(webhookId, event)) {
    seen.release(webhookId); // not taken: the operator's retry must be processed, not dropped
    res.set("Retry-After", String(RETRY_AFTER_SECONDS));
    return res.status(503).json({ error: "overloaded, retry later" });
  }
  return res.status(202).json({ status: "accepted", id: webhookId });
});

app.get("/healthz", (req, res) => {
  res.json({ status: "ok", receiver: "express", queued: work.size, seen: seen.size });
});

// Errors from the body parser (413 too large, 400 aborted...) as JSON, without stack traces.
app.use((err, req, res, next) => {
  const status = err.status || err.statusCode || 500;
  if (status >= 500) console.error(err);
  res.status(status).json({ error: status >= 500 ? "internal error" : err.message });
});

const host = process.env.HOST || "127.0.0.1";
const port = envInt("PORT", 3000);
const server = app.listen(port, host, (err) => {
  if (err) {
    console.error(`cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  }
  console.log(`webhook receiver listening on http://${host}:${port}/webhooks`);
});
server.on("error", (err) => {
  console.error(`cannot listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
});

// On SIGTERM or Ctrl-C: stop taking requests, finish the queued work (bounded), exit.
function shutdown(signal) {
  console.log(`${signal}: finishing ${work.size} queued events`);
  server.close();
  server.closeIdleConnections();
  const deadline = sleep(10000).then(() => console.warn(`shutdown: ${work.size} queued events were not processed`));
  Promise.race([work.idle(), deadline]).then(() => process.exit(0));
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
