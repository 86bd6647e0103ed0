// For tests/e2e/test_emitters.py: the TypeScript emitter (@roomcast/emitter, as compiled by `make typescript`) with
// the real @aws-sdk/client-eventbridge against the local stack. Argument: JSON {endpoint, companyId, conversationId}.
// Publishes one event of each kind, tries bad ones, and prints JSON {ids, refused, sent}: `sent` counts the
// PutEvents calls that left the client.
const { EventBridgeClient } = require("@aws-sdk/client-eventbridge");
const { Emitter, InvalidEvent } = require("@roomcast/emitter");

async function main() {
  const { endpoint, companyId, conversationId } = JSON.parse(process.argv[2]);
  const client = new EventBridgeClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: 1,
  });
  let sent = 0;
  client.middlewareStack.add(
    (next) => async (args) => {
      sent += 1;
      return next(args);
    },
    { step: "initialize", name: "countSends" },
  );
  const acme = new Emitter(client, { source: "crm.typescript" }).company(companyId);

  const refused = [];
  for (const [what, call] of [
    ["room of no kind", () => acme.to("team:7").emit("deal:won", {})],
    ["roomcast's own event", () => acme.to(`company:${companyId}`).emit("message:new", { content: "fake" })],
    ["title missing", () => acme.notify({ userId: "ana", type: "task" })],
    ["too large", () => acme.to("user:ben").emit("deal:won", { big: "x".repeat(140000) })],
  ]) {
    try {
      await call();
    } catch (error) {
      if (error instanceof InvalidEvent) refused.push(what);
      else throw error;
    }
  }
  const beforeGood = sent;

  const ids = {
    emit: await acme.to(`company:${companyId}`).to("user:ben").emit("deal:won", { amount: 2 }),
    notify: await acme.notify({ userId: "ana", type: "task", title: "From TypeScript" }),
    messageReceived: await acme.messageReceived({ conversationId, contactId: "ct-ts", content: "hola from ts" }),
    campaignStarted: await acme.campaignStarted({ campaignId: "k-ts", name: "Autumn" }),
    contactTagged: await acme.contactTagged({ conversationId, contactId: "ct-ts", tag: "vip" }),
    leadAssigned: await acme.leadAssigned({ leadId: "l-ts", assigneeUserId: "ana", conversationId }),
  };
  process.stdout.write(JSON.stringify({ ids, refused, sentBeforeGood: beforeGood, sent }));
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
