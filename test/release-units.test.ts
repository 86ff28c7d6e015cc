// Fast checks of the pieces the release path is built from: signatures, version ordering, the
// llama.cpp architecture table parser, and the service definitions (the launchd plist parsed as
// XML with its required keys, the systemd unit checked by systemd-analyze), plus the exact
// service-manager commands each action runs.

import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArchitectureNames } from "../scripts/lib/llama-archs.ts";
import { serviceSpecFromArgs } from "../src/cli/commands/service.ts";
import { compareVersions, isCompatibleEngine } from "../src/engines/llama/selection.ts";
import { SignatureError } from "../src/errors.ts";
import { renderLaunchdPlist, renderSystemdUnit, ServiceManager, type CommandResult } from "../src/service/manager.ts";
import { generateKeyPair, parsePrivateKey, parsePublicKey, signDetached, verifyDetached } from "../src/update/signing.ts";
import { parsePlist } from "./helpers/plist.ts";

describe("release signatures", () => {
  const a = generateKeyPair();
  const b = generateKeyPair();
  const data = new TextEncoder().encode('{"latest":{"stable":"1.0.0"}}\n');
  const signature = signDetached(data, parsePrivateKey(a.privatePem).key);
  const trustA = [parsePublicKey(a.publicPem)];

  test("a signature verifies with its key, also during a rotation that trusts two keys", () => {
    expect(signature).toMatch(new RegExp(`^lmx-signature-v1 ed25519 ${a.id} [A-Za-z0-9+/]{86}==\n$`));
    expect(verifyDetached(data, signature, trustA, "m")).toBe(a.id);
    expect(verifyDetached(data, signature, [parsePublicKey(b.publicPem), ...trustA], "m")).toBe(a.id);
    // Built-in keys are stored as base64 SPKI; both spellings are the same key.
    expect(parsePublicKey(parsePublicKey(a.publicPem).spki).id).toBe(a.id);
  });

  test("altered data, an unknown key, a malformed file and a build without keys are all refused", () => {
    const altered = data.slice();
    altered[3] = 0x41;
    expect(() => verifyDetached(altered, signature, trustA, "m")).toThrow(/does not match/);
    expect(() => verifyDetached(data, signature, [parsePublicKey(b.publicPem)], "m")).toThrow(new RegExp(`signed by key ${a.id}, which this lmx does not trust`));
    expect(() => verifyDetached(data, "lmx-signature-v1 ed25519 abc", trustA, "m")).toThrow(/malformed/);
    const forged = signature.replace(a.id, b.id);
    expect(() => verifyDetached(data, forged, [parsePublicKey(b.publicPem)], "m")).toThrow(/does not match/);
    expect(() => verifyDetached(data, signature, [], "m")).toThrow(SignatureError);
    expect(() => verifyDetached(data, signature, [], "m")).toThrow(/no release keys/);
  });
});

describe("versions", () => {
  test("orders releases, pre-releases and multi-digit parts", () => {
    const sorted = ["1.10.0", "1.2.0", "1.2.0-beta.2", "1.2.0-beta.10", "1.2.0-alpha", "0.9.9", "v1.2.1"].sort(compareVersions);
    expect(sorted).toEqual(["0.9.9", "1.2.0-alpha", "1.2.0-beta.2", "1.2.0-beta.10", "1.2.0", "v1.2.1", "1.10.0"]);
  });

  test("an engine is compatible within the embedded major, from its minor on", () => {
    expect(isCompatibleEngine("3.22.1", "3.21.1")).toBe(true);
    expect(isCompatibleEngine("3.21.0", "3.21.1")).toBe(true);
    expect(isCompatibleEngine("3.20.0", "3.21.1")).toBe(false);
    expect(isCompatibleEngine("4.0.0", "3.21.1")).toBe(false);
  });
});

test("reads general.architecture names from llama.cpp's LLM_ARCH_NAMES table", () => {
  const source = `
static const std::map<llm_arch, const char *> LLM_ARCH_NAMES = {
    { LLM_ARCH_CLIP,             "clip"             }, // dummy, only used by llama-quantize
    { LLM_ARCH_LLAMA,            "llama"            },
    { LLM_ARCH_QWEN2,            "qwen2"            },
    { LLM_ARCH_MODERN_BERT,      "modern-bert"      },
    { LLM_ARCH_UNKNOWN,          "(unknown)"        },
};
static const std::map<llm_kv, const char *> LLM_KV_NAMES = { { LLM_KV_GENERAL_TYPE, "general.type" } };`;
  expect(parseArchitectureNames(source)).toEqual(["llama", "qwen2", "modern-bert"]);
  expect(() => parseArchitectureNames("nothing here")).toThrow(/LLM_ARCH_NAMES/);
});

describe("service definitions", () => {
  const home = mkdtempSync(join(tmpdir(), "lmx-service-test-"));
  const lmxHome = join(home, ".lmx");
  const cwd = process.cwd();
  const spec = serviceSpecFromArgs(
    ["--port", "1300", "--model", "coder=models/a&b<c>.gguf", "--api-key", "k1", "--api-key", "k2", "--hf-token", "hf_secret", "--no-insecure-no-auth", "--ctx=8192"],
    process.execPath,
    lmxHome,
  );

  test("serve flags are carried over, paths made absolute, secrets moved to the environment", () => {
    expect(spec.serveArgs).toEqual(["--port=1300", `--model=coder=${cwd}/models/a&b<c>.gguf`, "--ctx=8192", "--no-insecure-no-auth"]);
    expect(spec.env).toEqual({ LMX_HOME: lmxHome, LMX_API_KEYS: "k1,k2", LMX_HF_TOKEN: "hf_secret" });
    expect(() => serviceSpecFromArgs(["--port", "99999"], process.execPath, lmxHome)).toThrow(/maximum/);
  });

  test("the launchd plist parses as XML with the keys launchd needs", () => {
    const plist = parsePlist(renderLaunchdPlist(spec)) as Record<string, unknown>;
    expect(plist.Label).toBe("dev.lmx.server");
    expect(plist.ProgramArguments).toEqual([process.execPath, "serve", ...spec.serveArgs]);
    expect(plist.RunAtLoad).toBe(true);
    expect(plist.KeepAlive).toBe(true);
    expect(plist.StandardOutPath).toBe(join(lmxHome, "logs", "lmx.log"));
    expect(plist.StandardErrorPath).toBe(join(lmxHome, "logs", "lmx.log"));
    expect(plist.EnvironmentVariables).toEqual(spec.env);
    expect(JSON.stringify(plist.ProgramArguments)).not.toContain("hf_secret");
  });

  test("the systemd unit passes systemd-analyze verify and quotes its arguments", async () => {
    const unit = renderSystemdUnit({ ...spec, serveArgs: [...spec.serveArgs, "--allowed-host=100%$HOME"] }, join(lmxHome, "service.env"));
    expect(unit).toContain(`ExecStart="${process.execPath}" "serve" "--port=1300"`);
    expect(unit).toContain('"--allowed-host=100%%$$HOME"');
    expect(unit).toMatch(/^Restart=always$/m);
    expect(unit).toMatch(/^WantedBy=default\.target$/m);
    expect(unit).not.toContain("k1");
    const path = join(home, "lmx.service");
    writeFileSync(path, unit);
    if (Bun.which("systemd-analyze") !== null) {
      const proc = Bun.spawn(["systemd-analyze", "verify", path], { stdout: "pipe", stderr: "pipe" });
      const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      // Only complaints about this unit count; the container's own units may be incomplete.
      const ours = `${out}${err}`.split("\n").filter((line) => line.includes("lmx.service"));
      expect(ours).toEqual([]);
      expect(code).toBe(0);
    }
  });

  test("install, status and uninstall run the right systemctl and launchctl commands", async () => {
    const calls: string[] = [];
    const answers: Record<string, CommandResult> = {
      "systemctl --user show lmx.service --property=ActiveState,SubState,MainPID": { code: 0, stdout: "MainPID=4242\nActiveState=active\nSubState=running\n", stderr: "" },
    };
    const runner = async (argv: string[]): Promise<CommandResult> => {
      calls.push(argv.join(" "));
      return answers[argv.join(" ")] ?? { code: 0, stdout: "", stderr: "" };
    };
    const env = { HOME: home, XDG_CONFIG_HOME: join(home, ".config") };
    const systemd = new ServiceManager(lmxHome, runner, "systemd", env);
    await systemd.install(spec, true);
    expect(calls).toEqual(["systemctl --user daemon-reload", "systemctl --user enable lmx.service", "systemctl --user restart lmx.service"]);
    const unitPath = join(home, ".config", "systemd", "user", "lmx.service");
    expect(readFileSync(unitPath, "utf8")).toContain("ExecStart=");
    expect(statSync(join(lmxHome, "service.env")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(lmxHome, "service.env"), "utf8")).toContain('LMX_API_KEYS="k1,k2"');
    expect(await systemd.status()).toMatchObject({ installed: true, running: true, pid: 4242 });
    calls.length = 0;
    expect(await systemd.restartIfRunning()).toBe(true);
    expect(calls.at(-1)).toBe("systemctl --user restart lmx.service");
    await systemd.uninstall();
    expect(existsSync(unitPath)).toBe(false);
    expect(existsSync(join(lmxHome, "service.env"))).toBe(false);

    calls.length = 0;
    const uid = process.getuid?.() ?? 0;
    answers[`launchctl print gui/${uid}/dev.lmx.server`] = { code: 0, stdout: "dev.lmx.server = {\n\tstate = running\n\tpid = 777\n}\n", stderr: "" };
    const launchd = new ServiceManager(lmxHome, runner, "launchd", env);
    await launchd.install(spec, true);
    const plistPath = join(home, "Library", "LaunchAgents", "dev.lmx.server.plist");
    expect(calls).toEqual([`launchctl bootout gui/${uid}/dev.lmx.server`, `launchctl bootstrap gui/${uid} ${plistPath}`]);
    expect(statSync(plistPath).mode & 0o777).toBe(0o600);
    expect(await launchd.status()).toMatchObject({ installed: true, running: true, pid: 777 });
    calls.length = 0;
    await launchd.stop();
    expect(calls).toEqual([`launchctl bootout gui/${uid}/dev.lmx.server`]);
  });
});
