// For tests/test_emitters.py: the TypeScript emitter's verdict on each [detailType, detail] read as JSON on stdin,
// printed as JSON: "ok", or the error's class name.
const { checked } = require("@roomcast/emitter");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const verdicts = JSON.parse(input).map(([detailType, detail]) => {
    try {
      checked(detailType, detail);
      return "ok";
    } catch (error) {
      return error.name;
    }
  });
  process.stdout.write(JSON.stringify(verdicts));
});
