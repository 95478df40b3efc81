// Follows a sandbox's event stream (NDJSON over fetch, since EventSource cannot send the token)
// and resumes after the last seq it saw when the connection drops, so the page never shows a
// gap or a duplicate, also across a server restart.

import { errorFrom, token, sandboxPath, reached, ndjson } from "./api.js";

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;

/**
 * Calls `onRecord(record)` for every event after `since`, in seq order, and `onState(state)`
 * with "live", "reconnecting" or "ended". Answers a function that stops following.
 */
export function follow(name, { since = 0, onRecord, onState, onError }) {
  const controller = new AbortController();
  let last = since;
  let delay = RETRY_MIN_MS;

  async function once() {
    const path = `${sandboxPath(name, "/events")}?follow=true&since=${last}`;
    let response;
    try {
      response = await fetch(path, {
        headers: { accept: "application/x-ndjson", authorization: `Bearer ${token()}` },
        signal: controller.signal,
        cache: "no-store",
      });
    } catch (e) {
      if (!controller.signal.aborted) reached(false);
      throw e;
    }
    reached(true);
    if (!response.ok) throw await errorFrom(response);
    onState("live");
    delay = RETRY_MIN_MS;
    for await (const record of ndjson(response)) {
      if (record.error) throw Object.assign(new Error(record.error.message), record.error);
      // A reconnect starts after `last`; anything older is a duplicate and is skipped.
      if (record.seq <= last) continue;
      last = record.seq;
      onRecord(record);
    }
  }

  (async () => {
    while (!controller.signal.aborted) {
      try {
        await once();
        // The server ends a followed stream only when it shuts down: reconnect.
      } catch (e) {
        if (controller.signal.aborted) return;
        if (e.status && e.status !== 503 && e.status !== 429) {
          onError && onError(e);
          onState("ended");
          return;
        }
      }
      if (controller.signal.aborted) return;
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  })();

  return () => controller.abort();
}
