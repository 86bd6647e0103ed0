// Connection state recovery (docs/socketio.md, "Sessions that outlive connections") with the real, unchanged
// socket.io-client 4.x against the local stack: only `query: { recovery: "1" }` is added to the options.
// Run by tests/e2e/test_recovery_stack.py with SCENARIO=blip (a network blip, limits, another user's pid)
// or SCENARIO=gateway (API Gateway's hard close, the window). Exits non-zero on the first failure.
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const BASE = process.env.ROOMCAST_URL;
const recovering = (token, extra = {}) => ({
  transports: ["websocket"],
  query: { token, recovery: "1" },
  timeout: 10000,
  reconnectionDelay: 300,
  reconnectionDelayMax: 600,
  ...extra,
});
const plain = (token) => ({ transports: ["websocket"], query: { token }, reconnection: false, timeout: 10000 });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function open(path, options) {
  const socket = io(`${BASE}${path}`, { ...options, forceNew: true });
  socket.heard = [];
  socket.onAny((event, ...args) => socket.heard.push([event, ...args]));
  return socket;
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

async function until(check, what, timeout = 15000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (check()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function contents(socket) {
  return socket.heard.filter(([event]) => event === "message:new").map(([, message]) => message.content);
}

function seqs(socket) {
  return socket.heard.filter(([event]) => event === "message:new").map(([, message]) => message.seq);
}

function sessions(socket) {
  return socket.heard.filter(([event]) => event === "session").map(([, data]) => data.recovered);
}

// The client's TCP connection destroyed under it: no close frame, as when a network drops.
function blip(socket) {
  socket.io.engine.transport.ws._socket.destroy();
}

async function send(sender, conversationId, content) {
  const reply = await sender.timeout(10000).emitWithAck("message:send", { conversationId, content });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  return reply.data.seq;
}

async function conversationWith(ana, ben) {
  const created = await ana.emitWithAck("conversation:create", { subject: "recovery" });
  assert.equal(created.ok, true);
  const conversationId = created.data.conversation.id;
  assert.equal((await ana.emitWithAck("join:conversation", conversationId)).ok, true);
  assert.equal((await ben.emitWithAck("join:conversation", conversationId)).ok, true);
  return conversationId;
}

async function recoversThroughABlip() {
  const ana = await connected(open("/conversations", recovering(process.env.TOKEN_ANA)));
  const ben = await connected(open("/conversations", plain(process.env.TOKEN_BEN)));
  assert.equal(ana.recovered, false);
  await until(() => sessions(ana).length === 1, "the first session event");
  assert.deepEqual(sessions(ana), [false]);
  const conversationId = await conversationWith(ana, ben);
  await send(ben, conversationId, "before");
  await until(() => contents(ana).includes("before"), "the first message");
  const id = ana.id;

  ana.io.reconnection(false); // held while the gap's messages are sent, then let go
  blip(ana);
  await until(() => !ana.connected, "the blip");
  const missed = [await send(ben, conversationId, "gap-1"), await send(ben, conversationId, "gap-2")];
  ana.io.reconnection(true);
  ana.connect();
  await until(() => ana.connected, "the reconnection");
  assert.equal(ana.recovered, true);
  assert.equal(ana.id, id);
  await until(() => sessions(ana).length === 2, "the second session event");
  assert.deepEqual(sessions(ana), [false, true]);
  assert.deepEqual(contents(ana), ["before", "gap-1", "gap-2"]);
  assert.deepEqual(seqs(ana).slice(1), missed);
  // The conversation's room is back without a new join.
  await send(ben, conversationId, "after");
  await until(() => contents(ana).includes("after"), "a later message");
  assert.deepEqual(contents(ana), ["before", "gap-1", "gap-2", "after"]);
  // Every recoverable event's last argument is its offset; they grow.
  const offsets = ana.heard.filter((args) => typeof args[args.length - 1] === "string").map((args) => Number(args.at(-1)));
  assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
  return { ana, ben, conversationId };
}

async function noEventYet() {
  // A session that heard nothing but its session event still recovers: that event carries an offset.
  const dora = await connected(open("/analytics", recovering(process.env.TOKEN_DORA)));
  await until(() => sessions(dora).length === 1, "dora's session event");
  const id = dora.id;
  blip(dora);
  await until(() => dora.connected === false, "dora's blip");
  await until(() => dora.connected, "dora's reconnection");
  assert.equal(dora.recovered, true);
  assert.equal(dora.id, id);
  dora.disconnect();
}

async function anotherUsersPid(ana) {
  const pid = ana._pid;
  const offset = ana._lastOffset;
  const carl = open("/conversations", recovering(process.env.TOKEN_CARL, { auth: { pid, offset }, reconnection: false }));
  await connected(carl);
  assert.equal(carl.recovered, false);
  await until(() => sessions(carl).length === 1, "carl's session event");
  assert.deepEqual(sessions(carl), [false]);
  assert.notEqual(carl._pid, pid);
  assert.deepEqual(contents(carl), []);
  carl.disconnect();
  // The owner's session is intact: ana still recovers.
  const id = ana.id;
  blip(ana);
  await until(() => !ana.connected, "ana's second blip");
  await until(() => ana.connected, "ana's second reconnection");
  assert.equal(ana.recovered, true);
  assert.equal(ana.id, id);
}

async function pastTheMostEvents(ana, ben, conversationId) {
  const most = Number(process.env.RECOVERY_MAX_EVENTS);
  const id = ana.id;
  ana.io.reconnection(false);
  blip(ana);
  await until(() => !ana.connected, "the long gap");
  for (let index = 0; index <= most; index += 1) await send(ben, conversationId, `flood-${index}`);
  const before = contents(ana).length;
  ana.connect();
  await connected(ana);
  assert.equal(ana.recovered, false);
  assert.notEqual(ana.id, id);
  await until(() => sessions(ana).at(-1) === false, "the new session event");
  assert.equal(contents(ana).length, before, "nothing is replayed when the replay would be partial");
}

async function throughTheGatewaysClose() {
  // The stack's hard timeout closes every connection after HARD_TIMEOUT seconds, as API Gateway does at 2 h.
  const ana = await connected(open("/conversations", recovering(process.env.TOKEN_ANA)));
  await sleep(Number(process.env.HARD_TIMEOUT) * 500); // ben's connection is closed later than ana's
  const ben = await connected(open("/conversations", plain(process.env.TOKEN_BEN)));
  const conversationId = await conversationWith(ana, ben);
  const id = ana.id;
  ana.io.reconnection(false);
  const closed = new Promise((resolve) => ana.once("disconnect", resolve));
  assert.equal(await closed, "transport close");
  const missed = await send(ben, conversationId, "while closed");
  ana.io.reconnection(true);
  ana.connect();
  await until(() => ana.connected, "the reconnection after the close");
  assert.equal(ana.recovered, true);
  assert.equal(ana.id, id);
  await send(ben, conversationId, "after the close");
  await until(() => contents(ana).length === 2, "both messages");
  assert.deepEqual(contents(ana), ["while closed", "after the close"]);
  assert.equal(seqs(ana)[0], missed);
  ben.close();
  ana.disconnect();
}

async function pastTheWindow() {
  const window = Number(process.env.RECOVERY_WINDOW_SECONDS);
  const ana = await connected(open("/conversations", recovering(process.env.TOKEN_ANA, { reconnection: false })));
  await until(() => sessions(ana).length === 1, "the session event");
  const id = ana.id;
  blip(ana);
  await until(() => !ana.connected, "the blip");
  await sleep(window * 1000 + 1500);
  ana.connect();
  await connected(ana);
  assert.equal(ana.recovered, false);
  assert.notEqual(ana.id, id);
  ana.disconnect();
}

if (process.env.SCENARIO === "blip") {
  const { ana, ben, conversationId } = await recoversThroughABlip();
  await noEventYet();
  await anotherUsersPid(ana);
  await pastTheMostEvents(ana, ben, conversationId);
  ana.disconnect();
  ben.close();
} else {
  await throughTheGatewaysClose();
  await pastTheWindow();
}
console.log("all passed");
process.exit(0);
