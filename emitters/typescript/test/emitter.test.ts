// The emitter with the real EventBridge client, its sends caught before the network by a middleware of the SDK's
// own stack: what PutEvents would carry, and that a bad event never reaches it.
import assert from "node:assert/strict";
import { test } from "node:test";

import { EventBridgeClient, type PutEventsCommandInput } from "@aws-sdk/client-eventbridge";

import { Emitter, FrameTooLarge, InvalidEvent, PublishFailed } from "../src";

interface Caught {
  client: EventBridgeClient;
  calls: PutEventsCommandInput[];
}

function caughtClient(failing: Set<number> = new Set()): Caught {
  const client = new EventBridgeClient({
    region: "us-east-1",
    endpoint: "http://127.0.0.1:9",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  const calls: PutEventsCommandInput[] = [];
  client.middlewareStack.add(
    () => async (args) => {
      const input = args.input as PutEventsCommandInput;
      calls.push(input);
      const Entries = (input.Entries ?? []).map((_, index) =>
        failing.has(index) ? { ErrorCode: "InternalFailure", ErrorMessage: "try again" } : { EventId: `e-${calls.length}-${index}` },
      );
      return { output: { Entries, FailedEntryCount: failing.size, $metadata: {} }, response: {} } as never;
    },
    { step: "initialize", name: "caught" },
  );
  return { client, calls };
}

test("to(room).emit puts one Emit entry on the bus, with the company bound", async () => {
  const { client, calls } = caughtClient();
  const ids = await new Emitter(client, { bus: "crm-bus", source: "crm.billing" })
    .company("acme")
    .to("user:ana")
    .emit("deal:won", { dealId: "d-7" });
  assert.deepEqual(ids, ["e-1-0"]);
  assert.equal(calls.length, 1);
  const [entry] = calls[0]?.Entries ?? [];
  assert.equal(entry?.DetailType, "Emit");
  assert.equal(entry?.EventBusName, "crm-bus");
  assert.equal(entry?.Source, "crm.billing");
  assert.deepEqual(JSON.parse(entry?.Detail ?? ""), {
    room: "user:ana",
    event: "deal:won",
    data: { dealId: "d-7" },
    companyId: "acme",
  });
});

test("chained rooms are one entry each, ten to a PutEvents call", async () => {
  const { client, calls } = caughtClient();
  const rooms = Array.from({ length: 12 }, (_, index) => `user:u-${index}`);
  const ids = await new Emitter(client).company("acme").to(...rooms.slice(0, 6)).to(...rooms.slice(6), "user:u-0").emit("x:y");
  assert.equal(ids.length, 12);
  assert.deepEqual(
    calls.map((call) => call.Entries?.length),
    [10, 2],
  );
  assert.equal(calls[0]?.Entries?.[0]?.EventBusName, "roomcast");
});

test("typed calls put their detail-type, unset fields left out", async () => {
  const { client, calls } = caughtClient();
  const acme = new Emitter(client).company("acme");
  await acme.notify({ userId: "ana", type: "task", title: "Call back", body: undefined });
  await acme.leadAssigned({ leadId: "l-1", assigneeUserId: "ana", conversationId: null });
  await acme.messageReceived({ conversationId: "c-1", contactId: "ct-1", content: "hola" });
  await acme.campaignStarted({ campaignId: "k-1", name: "Spring" });
  await acme.contactTagged({ conversationId: "c-1", contactId: "ct-1", tag: "vip" });
  const entries = calls.map((call) => call.Entries?.[0]);
  assert.deepEqual(
    entries.map((entry) => entry?.DetailType),
    ["Notify", "LeadAssigned", "MessageReceived", "CampaignStarted", "ContactTagged"],
  );
  assert.deepEqual(JSON.parse(entries[0]?.Detail ?? ""), { userId: "ana", type: "task", title: "Call back", companyId: "acme" });
  assert.deepEqual(JSON.parse(entries[1]?.Detail ?? ""), { leadId: "l-1", assigneeUserId: "ana", companyId: "acme" });
});

test("an event roomcast would drop raises before anything is sent", async () => {
  const { client, calls } = caughtClient();
  const acme = new Emitter(client).company("acme");
  const bad: Array<[string, () => Promise<unknown>]> = [
    ["a room of no kind", () => acme.to("team:7").emit("deal:won", {})],
    ["one of roomcast's own events", () => acme.to("company:acme").emit("message:new", {})],
    ["an event name not noun:verb", () => acme.to("company:acme").emit("dealWon", {})],
    ["a missing title", () => acme.notify({ userId: "ana", type: "task" } as never)],
    ["a control character", () => acme.notify({ userId: "ana", type: "task", title: "a\u0000b" })],
    ["an unknown field", () => acme.campaignStarted({ campaignId: "k-1", name: "x", extra: 1 } as never)],
    ["a bad id", () => acme.contactTagged({ conversationId: "c 1", contactId: "ct-1", tag: "vip" })],
    ["empty content", () => acme.messageReceived({ conversationId: "c-1", contactId: "ct-1", content: "" })],
    ["no room", () => acme.to().emit("deal:won", {})],
    // One bad room among good ones: none is sent.
    ["one bad room of two", () => acme.to("user:ana", "team:7").emit("deal:won", {})],
  ];
  for (const [what, call] of bad) {
    await assert.rejects(call, InvalidEvent, what);
  }
  assert.equal(calls.length, 0);
});

test("an event that cannot fit a frame raises FrameTooLarge before it is sent", async () => {
  const { client, calls } = caughtClient();
  const acme = new Emitter(client).company("acme");
  const big = "x".repeat(131072);
  await assert.rejects(() => acme.to("user:ana").emit("deal:won", { big }), FrameTooLarge);
  await assert.rejects(() => acme.notify({ userId: "ana", type: "t", title: "t", data: { big } }), FrameTooLarge);
  assert.equal(calls.length, 0);
  // Just under the limit it goes: the frame is {"event","namespace","data"} at most 131072 bytes.
  const envelope = Buffer.byteLength(JSON.stringify({ event: "deal:won", namespace: "/notifications", data: { big: "" } }));
  await acme.to("user:ana").emit("deal:won", { big: "x".repeat(131072 - envelope) });
  await assert.rejects(() => acme.to("user:ana").emit("deal:won", { big: "é".repeat((131072 - envelope) / 2 + 1) }), FrameTooLarge);
  assert.equal(calls.length, 1);
});

test("an entry EventBridge refuses raises PublishFailed", async () => {
  const { client } = caughtClient(new Set([0]));
  await assert.rejects(
    () => new Emitter(client).company("acme").to("user:ana").emit("deal:won", {}),
    (error: unknown) => error instanceof PublishFailed && error.code === "InternalFailure",
  );
});
