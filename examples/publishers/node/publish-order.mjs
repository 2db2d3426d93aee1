// Publish a WebhookEvent idempotently from Node, with the official @kubernetes/client-node.
//
//   node publish-order.mjs ORDER_ID [--namespace shop] [--amount 42.5]
//
// The event's object name is derived from an idempotency key ("order-<id>-created") exactly as
// `webhook-operator publish --key` and the Python client derive it, so a retried or repeated
// publish, from this script or any other producer using the same key, finds the first event
// instead of creating a second one (receivers would otherwise get two different webhook-ids).
// Credentials: $KUBECONFIG / ~/.kube/config, or the pod's service account in a cluster; the
// identity needs the ClusterRole webhook-operator-publisher in the namespace.

import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { isDeepStrictEqual, parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';

const GROUP = 'webhooks.openplatform.dev';
const VERSION = 'v1alpha1';
const PLURAL = 'webhookevents';
const KEY_ANNOTATION = `${GROUP}/idempotency-key`;
const RETRY_DELAYS_MS = [200, 400, 800, 1600, 3200, 5000, 5000, 5000];

/** `<slug of the key, 40 chars at most>-<first 16 hex digits of SHA-256(key)>`: the shared rule. */
export function nameForKey(key) {
  const slug = key
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
    .replace(/-+$/, '');
  const digest = createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 16);
  return `${slug || 'event'}-${digest}`;
}

function retryable(error) {
  // An HTTP answer worth repeating (429, 5xx), or no answer at all (connection refused, reset).
  const code = error?.code;
  return typeof code !== 'number' || code === 429 || (code >= 500 && code !== 501);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms * (0.5 + Math.random() / 2)));

/**
 * Create the event, or find the one this key already created. Resolves to {name, uid, created};
 * rejects when the key was used for a different event, or on a non-retryable API error.
 */
export async function publishEvent(api, namespace, { type, data, key, source, ttlSeconds }) {
  const name = nameForKey(key);
  const spec = { type, data };
  if (source) spec.source = source;
  if (ttlSeconds !== undefined) spec.ttlSecondsAfterFinished = ttlSeconds;
  const body = {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'WebhookEvent',
    metadata: { name, namespace, annotations: { [KEY_ANNOTATION]: key } },
    spec,
  };
  const where = { group: GROUP, version: VERSION, namespace, plural: PLURAL };
  for (let attempt = 0; ; attempt += 1) {
    try {
      const created = await api.createNamespacedCustomObject({ ...where, body });
      return { name, uid: created.metadata.uid, created: true };
    } catch (error) {
      if (error?.code === 409) {
        // Already there: our own earlier publish (or this one's, whose answer was lost)?
        const existing = await api.getNamespacedCustomObject({ ...where, name });
        const sameKey = existing.metadata?.annotations?.[KEY_ANNOTATION] === key;
        if (sameKey && isDeepStrictEqual(existing.spec, spec)) {
          return { name, uid: existing.metadata.uid, created: false };
        }
        throw new Error(`key ${JSON.stringify(key)} was already used for webhookevent ${name} with different content`);
      }
      if (!retryable(error) || attempt >= RETRY_DELAYS_MS.length) throw error;
      await sleep(RETRY_DELAYS_MS[attempt]);
    }
  }
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { namespace: { type: 'string', short: 'n' }, amount: { type: 'string', default: '0' } },
  });
  const orderId = Number(positionals[0]);
  if (!Number.isInteger(orderId)) {
    console.error('usage: node publish-order.mjs ORDER_ID [--namespace NS] [--amount N]');
    process.exit(2);
  }
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault(); // $KUBECONFIG, ~/.kube/config, or the in-cluster service account
  const namespace = values.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  const event = await publishEvent(api, namespace, {
    type: 'order.created',
    data: { orderId, amount: Number(values.amount) },
    key: `order-${orderId}-created`,
    source: '/shop/orders',
  });
  console.log(JSON.stringify(event));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error) => {
    console.error(`error: ${error.body?.message ?? error.message}`);
    process.exit(1);
  });
}
