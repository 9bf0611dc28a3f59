// A real OIDC provider (npm oauth2-mock-server) for tests/integration/test_oidc_provider.py.
//
//   node tests/oidc/provider.mjs --port PORT [--audience c360]
//
// Serves discovery, /jwks and /token on 127.0.0.1:PORT with one RS256 key.
// Client-credentials tokens carry Keycloak-shaped roles: the form fields
// `roles` (space-separated), `tenant` and `mfa` become realm_access.roles,
// tenant and amr. Reading the line "rotate ALG" on stdin adds a key of that
// algorithm, keeps the old one published, and signs the next token with the
// new one. The process exits when stdin closes.
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { OAuth2Server } from "oauth2-mock-server";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    audience: { type: "string", default: "c360" },
  },
});
const port = Number(values.port);
const server = new OAuth2Server();
let current = (await server.issuer.keys.generate("RS256")).kid;

server.service.on("beforeTokenSigning", (token, req) => {
  const body = req.body ?? {};
  token.payload.aud ??= values.audience;
  token.payload.sub ??= body.client_id ?? "test-client";
  token.payload.azp = body.client_id ?? "test-client";
  token.payload.realm_access = { roles: String(body.roles ?? "").split(" ").filter(Boolean) };
  if (body.tenant) token.payload.tenant = body.tenant;
  token.payload.amr = body.mfa === "true" ? ["pwd", "otp"] : ["pwd"];
});

// The issuer URL must be exactly what the tests configure, not "localhost".
server.issuer.url = `http://127.0.0.1:${port}`;
await server.start(port, "127.0.0.1");

const commands = createInterface({ input: process.stdin });
commands.on("line", async (line) => {
  const [command, alg] = line.trim().split(/\s+/);
  if (command !== "rotate") return;
  const fresh = await server.issuer.keys.generate(alg || "RS256");
  // The store hands out keys round-robin, oldest first: touching the old key
  // moves it behind the new one, so the next token is signed with the new key.
  server.issuer.keys.get(current);
  current = fresh.kid;
});
commands.on("close", async () => {
  await server.stop();
  process.exit(0);
});
