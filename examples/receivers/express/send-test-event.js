// Send one signed test event to a receiver, the way webhook-operator does, then send it again.
//
//     WEBHOOK_SECRET=whsec_... node send-test-event.js [URL]
//
// Expect 202 (accepted) and then 200 (duplicate: same webhook-id, not processed again).

"use strict";

const crypto = require("node:crypto");
const { Webhook } = require("standardwebhooks");

async function send(url, webhook, webhookId, body) {
  const now = new Date();
  const response = await fetch(url, {
    method: "POST",
    redirect: "manual", // like the operator: a redirect is a failure, never followed
    headers: {
      "content-type": "application/json",
      "webhook-id": webhookId,
      "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "webhook-signature": webhook.sign(webhookId, now, body),
    },
    body,
  });
  const retryAfter = response.headers.get("retry-after");
  console.log(response.status, await response.text(), retryAfter ? `(Retry-After: ${retryAfter})` : "");
}

async function main() {
  const url = process.argv[2] || "http://127.0.0.1:3000/webhooks";
  if (!process.env.WEBHOOK_SECRET) {
    console.error("set WEBHOOK_SECRET to the receiver's key (whsec_...)");
    process.exit(2);
  }
  const webhook = new Webhook(process.env.WEBHOOK_SECRET);
  const webhookId = crypto.randomUUID(); // the operator uses the WebhookEvent's metadata.uid
  const body = JSON.stringify({
    type: "order.created",
    timestamp: new Date().toISOString(),
    data: { orderId: 1001, total: "12.50" },
  });
  console.log(`POST ${url} webhook-id=${webhookId}`);
  await send(url, webhook, webhookId, body);
  await send(url, webhook, webhookId, body); // a redelivery: same webhook-id
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
