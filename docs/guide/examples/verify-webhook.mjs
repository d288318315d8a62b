// Verifying a Homecare webhook delivery in Node.js (18 or later), with node:crypto only.
// The signing specification: docs/guide/provider-integration.md#webhook-signing
//
//   node verify-webhook.mjs webhook-signature-vectors.json   checks the published test vectors
//
// In a receiver: read the body as raw bytes (never re-serialise parsed JSON), then
//   const deliveryId = verifyDelivery(secret, request.headers, rawBody);  // throws: answer 401
// and drop a delivery id already handled (a retry of the same delivery carries the same id).

import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { argv } from "node:process";
import { fileURLToPath } from "node:url";

export const TOLERANCE_SECONDS = 300;

export class SignatureError extends Error {}

/**
 * The signature of one delivery attempt: "v2=" and the lowercase hex HMAC-SHA256, keyed with the
 * UTF-8 bytes of the whole secret string ("whsec_..." as given, not decoded), over
 * "<delivery id>.<timestamp>." followed by the raw body bytes.
 * @param {string} secret @param {string} deliveryId @param {number|string} timestamp @param {Buffer} body
 * @returns {string}
 */
export function signature(secret, deliveryId, timestamp, body) {
  const mac = createHmac("sha256", Buffer.from(secret, "utf8"));
  mac.update(Buffer.from(`${deliveryId}.${timestamp}.`, "utf8"));
  mac.update(body);
  return `v2=${mac.digest("hex")}`;
}

/**
 * Check a delivery; returns its delivery id. Throws SignatureError (answer 401) when a header is
 * missing or malformed, the timestamp is further than `toleranceSeconds` from now, or no signature
 * in the header matches.
 * @param {string} secret
 * @param {Record<string, string | string[] | undefined>} headers  any case (Node lower-cases them)
 * @param {Buffer} body  the raw request body
 * @param {{toleranceSeconds?: number, now?: number}} [options]  now: unix seconds (tests)
 * @returns {string}
 */
export function verifyDelivery(secret, headers, body, options = {}) {
  const { toleranceSeconds = TOLERANCE_SECONDS, now = Date.now() / 1000 } = options;
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
  const deliveryId = lower["homecare-delivery-id"];
  const stamp = lower["homecare-timestamp"];
  const given = lower["homecare-signature"];
  if (!deliveryId || !given || !/^[0-9]+$/.test(stamp ?? "")) {
    throw new SignatureError("missing or malformed signature headers");
  }
  if (Math.abs(now - Number(stamp)) > toleranceSeconds) {
    throw new SignatureError("stale delivery");
  }
  const expected = Buffer.from(signature(secret, deliveryId, stamp, body));
  // Two signatures, comma-separated, during a secret rotation's overlap: any one matching will do.
  const matches = given.split(",").some((candidate) => {
    const bytes = Buffer.from(candidate.trim());
    return bytes.length === expected.length && timingSafeEqual(bytes, expected);
  });
  if (!matches) {
    throw new SignatureError("signature does not match");
  }
  return deliveryId;
}

// Run as a program: check each test vector of the file named on the command line.
if (argv[1] === fileURLToPath(import.meta.url)) {
  const { vectors, rotation_overlap } = JSON.parse(readFileSync(argv[2], "utf8"));
  for (const v of vectors) {
    const body = Buffer.from(v.body, "utf8");
    const made = signature(v.secret, v.delivery_id, v.timestamp, body);
    if (made !== v.signature) throw new Error(`${v.name}: signed ${made}, the vector says ${v.signature}`);
    const headers = {
      "Homecare-Delivery-Id": v.delivery_id,
      "Homecare-Timestamp": String(v.timestamp),
      "Homecare-Signature": v.signature,
    };
    verifyDelivery(v.secret, headers, body, { now: v.timestamp });
    console.log(`ok: ${v.name}`);
  }
  // A rotation's overlap: the header holds both secrets' signatures; either secret verifies it.
  for (const v of rotation_overlap ?? []) {
    const body = Buffer.from(v.body, "utf8");
    const made = [v.secrets.new, v.secrets.previous].map((s) => signature(s, v.delivery_id, v.timestamp, body));
    if (made.join(",") !== v.signature) throw new Error(`${v.name}: signed ${made.join(",")}, the vector says ${v.signature}`);
    const headers = {
      "Homecare-Delivery-Id": v.delivery_id,
      "Homecare-Timestamp": String(v.timestamp),
      "Homecare-Signature": v.signature,
    };
    verifyDelivery(v.secrets.new, headers, body, { now: v.timestamp });
    verifyDelivery(v.secrets.previous, headers, body, { now: v.timestamp });
    console.log(`ok: ${v.name}`);
  }
}
