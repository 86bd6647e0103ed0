// The original front end's calls with the real socket.io-client 4.x, against the local stack, changing only
// the connection options (docs/socketio.md). Run by tests/e2e/test_socketio.py; exits non-zero on the first failure.
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const BASE = process.env.ROOMCAST_URL;
const options = (token) => ({ transports: ["websocket"], query: { token }, reconnection: false, timeout: 10000 });

function connect(path, token, manager) {
  const socket = manager ? manager.socket(path) : io(`${BASE}${path}`, options(token));
  socket.heard = [];
  socket.onAny((event, data) => socket.heard.push([event, data]));
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

async function next(socket, event, timeout = 10000) {
  const until = Date.now() + timeout;
  while (Date.now() < until) {
    const index = socket.heard.findIndex(([name]) => name === event);
    if (index >= 0) return socket.heard.splice(index, 1)[0][1];
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no ${event} within ${timeout} ms`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// All three namespaces over one connection: one Manager, as io() shares it for one URL.
const conversations = await connect("/conversations", process.env.TOKEN_ANA);
const manager = conversations.io;
const notifications = await connect("/notifications", null, manager);
const analytics = await connect("/analytics", null, manager);
assert.equal(manager.engine.transport.name, "websocket");

const ben = await connect("/conversations", process.env.TOKEN_BEN);
assert.deepEqual(await next(conversations, "status:online"), { userId: "ben" });

const created = await conversations.emitWithAck("conversation:create", { subject: "from node" });
assert.equal(created.ok, true);
const conversationId = created.data.conversation.id;
const joined = await ben.emitWithAck("join:conversation", conversationId);
assert.deepEqual(joined, { ok: true, data: { conversationId, room: `conversation:${conversationId}` } });

const sent = await conversations.timeout(10000).emitWithAck("message:send", { conversationId, content: "hi" });
assert.equal(sent.ok, true);
assert.equal((await next(ben, "message:new")).content, "hi");
conversations.emit("message:send", { conversationId, content: "no ack" });
assert.ok((await next(conversations, "message:sent")).id);
assert.equal((await next(ben, "message:new")).content, "no ack");

ben.emit("conversation:typing", conversationId);
assert.equal((await next(conversations, "conversation:typing")).userId, "ben");
await sleep(500);
assert.ok(!ben.heard.some(([name]) => name === "conversation:typing"), "the sender hears its own typing");

const carl = await connect("/conversations", process.env.TOKEN_CARL);
assert.deepEqual(await next(conversations, "status:online"), { userId: "carl" });
carl.disconnect();
assert.deepEqual(await next(conversations, "status:offline"), { userId: "carl" });

notifications.emit("notification:all_read");
assert.equal(typeof (await next(notifications, "notification:all_read")).count, "number");
const missing = await notifications.emitWithAck("notification:read", "n-does-not-exist");
assert.equal(missing.ok, false);
assert.equal(missing.error.code, "not_found");

analytics.emit("analytics:request", "today");
assert.equal((await next(analytics, "analytics:update")).period, "today");

// socket.disconnect() of one namespace leaves that namespace only.
analytics.disconnect();
assert.equal((await notifications.emitWithAck("ping")).ok, true);
assert.equal((await conversations.emitWithAck("ping")).ok, true);

const unknown = io(`${BASE}/random`, options(process.env.TOKEN_ANA));
const unknownError = await new Promise((resolve) => unknown.once("connect_error", resolve));
assert.equal(unknownError.message, "Invalid namespace");
unknown.close();

const stranger = io(`${BASE}/conversations`, options("not-a-jwt"));
const refused = await new Promise((resolve) => stranger.once("connect_error", resolve));
assert.match(refused.message, /websocket error/);
stranger.close();

conversations.disconnect();
notifications.disconnect();
ben.disconnect();
console.log("all passed");
process.exit(0);
