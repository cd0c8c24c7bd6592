#!/usr/bin/env node
// Offline validation of deploy/: YAML style, the kustomizations rendered
// without the kustomize binary, every object against the Kubernetes
// OpenAPI models (kubernetes-models), the deployment invariants, and the
// Dockerfile checked statically against the built binary.
//
// usage: node test.js BINARY      (a built uapi-sidecar)
// Ends with "N passed, N failed"; exit status 0 only when nothing failed.
"use strict";

const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");
const YAML = require("yaml");

const REPO = path.resolve(__dirname, "..", "..");
const DEPLOY = path.join(REPO, "deploy");
const BASE = path.join(DEPLOY, "kustomize", "base");
const CLASSIC = path.join(DEPLOY, "kustomize", "overlays", "classic-sidecar");
const SIDECAR = "uapi-sidecar";
const GRPC_PORT = 50051;
const ADMIN_PORT = 9090;
const RUNTIME_UID = 65532;

let passed = 0;
let failed = 0;

function check(name, fn) {
  try {
    fn();
    passed++;
    console.log(`ok    ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL  ${name}\n      ${String(e && e.message ? e.message : e).replace(/\n/g, "\n      ")}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function eq(actual, expected, what) {
  assert(
    JSON.stringify(actual) === JSON.stringify(expected),
    `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`
  );
}

// ------------------------------------------------------------ YAML lint ----

function walkFiles(dir, pred) {
  const out = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...walkFiles(p, pred));
    else if (pred(p)) out.push(p);
  }
  return out.sort();
}

// Plain scalars that YAML 1.1 readers (older Kubernetes tooling) and YAML
// 1.2 readers understand differently: yes/no/on/off and leading-zero
// numbers (0440 is octal to one, decimal to the other).
const AMBIGUOUS = /^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|[-+]?0[0-9_]+)$/;

function lintYaml(file) {
  const text = fs.readFileSync(file, "utf8");
  const rel = path.relative(REPO, file);
  const problems = [];
  if (text.includes("\r")) problems.push("carriage return (CRLF line endings)");
  if (!text.endsWith("\n")) problems.push("no newline at end of file");
  if (text.endsWith("\n\n")) problems.push("blank line(s) at end of file");
  text.split("\n").forEach((line, i) => {
    if (line.includes("\t")) problems.push(`line ${i + 1}: tab character`);
    if (/[ \t]+$/.test(line)) problems.push(`line ${i + 1}: trailing whitespace`);
  });
  const docs = YAML.parseAllDocuments(text, { uniqueKeys: true, strict: true, prettyErrors: true });
  for (const doc of docs) {
    for (const e of doc.errors) problems.push(`parse error: ${e.message}`);
    for (const w of doc.warnings) problems.push(`parse warning: ${w.message}`);
    YAML.visit(doc, {
      Scalar(_, node) {
        if (node.type === "PLAIN" && typeof node.source === "string" && AMBIGUOUS.test(node.source)) {
          problems.push(`ambiguous plain scalar ${JSON.stringify(node.source)}: quote it or write it unambiguously`);
        }
      },
    });
  }
  assert(problems.length === 0, `${rel}:\n${problems.join("\n")}`);
}

function loadYaml(file) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { uniqueKeys: true, strict: true });
  return docs.map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    return d.toJS();
  }).filter((o) => o !== null && o !== undefined);
}

// ------------------------------------------------- kustomize (a subset) ----
// resources (files and directories holding a kustomization.yaml) and
// patches given as RFC 6902 JSON patches with a target. Any other
// kustomization field is refused, so the renderer never silently ignores
// what kustomize would apply.

const KUSTOMIZATION_FIELDS = new Set(["apiVersion", "kind", "resources", "patches"]);

function decodePointer(ptr) {
  if (ptr === "") return [];
  assert(ptr.startsWith("/"), `bad JSON pointer ${ptr}`);
  return ptr.slice(1).split("/").map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function resolveParent(doc, ptr) {
  const toks = decodePointer(ptr);
  assert(toks.length > 0, `cannot operate on the document root (${ptr})`);
  let cur = doc;
  for (const t of toks.slice(0, -1)) {
    assert(cur !== null && typeof cur === "object" && Object.prototype.hasOwnProperty.call(cur, t),
      `path ${ptr}: ${t} does not exist`);
    cur = cur[t];
  }
  return { parent: cur, key: toks[toks.length - 1] };
}

function arrayIndex(arr, key, forAdd, ptr) {
  if (forAdd && key === "-") return arr.length;
  assert(/^(0|[1-9][0-9]*)$/.test(key), `path ${ptr}: bad array index ${key}`);
  const i = Number(key);
  assert(forAdd ? i <= arr.length : i < arr.length, `path ${ptr}: index ${i} out of range`);
  return i;
}

function getAt(doc, ptr) {
  let cur = doc;
  for (const t of decodePointer(ptr)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, t, false, ptr)];
    else {
      assert(cur !== null && typeof cur === "object" && t in cur, `path ${ptr} does not exist`);
      cur = cur[t];
    }
  }
  return cur;
}

function removeAt(doc, ptr) {
  const { parent, key } = resolveParent(doc, ptr);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, key, false, ptr), 1)[0];
  assert(parent && typeof parent === "object" && key in parent, `path ${ptr} does not exist`);
  const v = parent[key];
  delete parent[key];
  return v;
}

function addAt(doc, ptr, value) {
  const { parent, key } = resolveParent(doc, ptr);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, true, ptr), 0, value);
  else {
    assert(parent && typeof parent === "object", `path ${ptr}: parent is not an object`);
    parent[key] = value;
  }
}

const clone = (v) => JSON.parse(JSON.stringify(v));

function applyJsonPatch(doc, ops, where) {
  ops.forEach((op, i) => {
    const at = `${where} op ${i} (${op.op} ${op.path})`;
    try {
      switch (op.op) {
        case "add": addAt(doc, op.path, clone(op.value)); break;
        case "remove": removeAt(doc, op.path); break;
        case "replace": removeAt(doc, op.path); addAt(doc, op.path, clone(op.value)); break;
        case "move": addAt(doc, op.path, removeAt(doc, op.from)); break;
        case "copy": addAt(doc, op.path, clone(getAt(doc, op.from))); break;
        case "test": eq(getAt(doc, op.path), op.value, "test"); break;
        default: throw new Error(`unknown op ${op.op}`);
      }
    } catch (e) {
      throw new Error(`${at}: ${e.message}`);
    }
  });
}

function matchesTarget(obj, t) {
  const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
  return (t.kind === undefined || t.kind === obj.kind)
    && (t.name === undefined || t.name === (obj.metadata || {}).name)
    && (t.group === undefined || t.group === group)
    && (t.version === undefined || t.version === version)
    && (t.namespace === undefined || t.namespace === (obj.metadata || {}).namespace);
}

function render(dir) {
  const kfile = path.join(dir, "kustomization.yaml");
  const [k] = loadYaml(kfile);
  for (const f of Object.keys(k)) assert(KUSTOMIZATION_FIELDS.has(f), `${kfile}: field ${f} is not supported by this renderer`);
  eq(k.kind, "Kustomization", `${kfile} kind`);
  let objects = [];
  for (const r of k.resources || []) {
    const p = path.join(dir, r);
    if (fs.statSync(p).isDirectory()) objects.push(...render(p));
    else objects.push(...loadYaml(p));
  }
  for (const [i, patch] of (k.patches || []).entries()) {
    assert(patch.target && patch.path, `${kfile} patch ${i}: only {path, target} patches are supported`);
    const ops = loadYaml(path.join(dir, patch.path))[0];
    assert(Array.isArray(ops), `${kfile} patch ${i}: only JSON 6902 patches are supported`);
    const targets = objects.filter((o) => matchesTarget(o, patch.target));
    assert(targets.length > 0, `${kfile} patch ${i}: target ${JSON.stringify(patch.target)} matches nothing`);
    for (const o of targets) applyJsonPatch(o, ops, `${path.relative(REPO, dir)}/${patch.path}`);
  }
  const ids = new Set();
  for (const o of objects) {
    const id = `${o.apiVersion}/${o.kind}/${(o.metadata || {}).namespace || ""}/${(o.metadata || {}).name}`;
    assert(!ids.has(id), `${kfile}: duplicate object ${id}`);
    ids.add(id);
  }
  return objects;
}

// ------------------------------------------------- schema validation ----
// kubernetes-models checks types, enums and required fields; its
// validators accept unknown fields, so unknownFields() walks the object
// against the property lists of the models' TypeScript declarations, which
// are generated from the same OpenAPI schema.

const MODELS = path.join(__dirname, "node_modules");

function modelClass(obj) {
  const mod = require(`kubernetes-models/${obj.apiVersion}`);
  const cls = mod[obj.kind];
  assert(cls, `no model for ${obj.apiVersion} ${obj.kind}`);
  return cls;
}

const dtsCache = new Map();

function stripComments(s) {
  return s.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

// The first interface of a .d.ts: { props: {name: type}, imports: {Name: file} }.
function parseDts(file) {
  if (dtsCache.has(file)) return dtsCache.get(file);
  const src = stripComments(fs.readFileSync(file, "utf8"));
  const imports = {};
  for (const m of src.matchAll(/import \{([^}]*)\} from "([^"]+)"/g)) {
    const spec = m[2];
    const target = spec.startsWith(".")
      ? path.resolve(path.dirname(file), spec) + ".d.ts"
      : path.join(MODELS, spec) + ".d.ts";
    for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) {
      imports[name.split(/\s+as\s+/).pop()] = target;
    }
  }
  const start = src.search(/export interface I\w+[^{]*\{/);
  let props = null;
  if (start >= 0) {
    let i = src.indexOf("{", start) + 1;
    let depth = 1;
    const bodyStart = i;
    while (depth > 0) {
      if (src[i] === "{") depth++;
      else if (src[i] === "}") depth--;
      i++;
    }
    const body = src.slice(bodyStart, i - 1);
    props = {};
    let j = 0;
    const re = /"([^"]+)"\??:\s*/y;
    while (j < body.length) {
      if (/\s/.test(body[j])) { j++; continue; }
      re.lastIndex = j;
      const m = re.exec(body);
      if (!m) throw new Error(`${file}: cannot parse interface near ${JSON.stringify(body.slice(j, j + 40))}`);
      let k = re.lastIndex;
      let d = 0;
      while (!(d === 0 && body[k] === ";")) {
        if ("{<(".includes(body[k])) d++;
        else if ("}>)".includes(body[k])) d--;
        k++;
      }
      props[m[1]] = body.slice(re.lastIndex, k).trim();
      j = k + 1;
    }
  }
  const r = { props, imports };
  dtsCache.set(file, r);
  return r;
}

function unknownFields(value, type, imports, at, out) {
  type = type.trim();
  let m;
  if (value === null || typeof value !== "object") return;
  if ((m = /^Array<([\s\S]*)>$/.exec(type))) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, m[1], imports, `${at}[${i}]`, out));
    return;
  }
  if ((m = /^\{\s*\[key: string\]:\s*([\s\S]*?);?\s*\}$/.exec(type))) {
    for (const [k, v] of Object.entries(value)) unknownFields(v, m[1], imports, `${at}.${k}`, out);
    return;
  }
  if (/^I\w+$/.test(type) && imports[type]) {
    checkInterface(value, imports[type], at, out);
  }
}

function checkInterface(value, file, at, out) {
  assert(fs.existsSync(file), `model declaration ${file} is missing`);
  const { props, imports } = parseDts(file);
  if (props === null || Array.isArray(value)) return; // a type alias (Quantity, IntOrString, Time)
  for (const [k, v] of Object.entries(value)) {
    if (!(k in props)) out.push(`${at}.${k}`);
    else unknownFields(v, props[k], imports, `${at}.${k}`, out);
  }
}

function validateObject(obj) {
  const cls = modelClass(obj);
  new cls(clone(obj)).validate();
  const file = path.join(MODELS, "kubernetes-models", obj.apiVersion, `${obj.kind}.d.ts`);
  const unknown = [];
  checkInterface(obj, file, obj.kind, unknown);
  assert(unknown.length === 0, `fields unknown to the Kubernetes schema: ${unknown.join(", ")}`);
}

// ------------------------------------------------------- invariants ----

const objName = (o) => `${o.kind}/${o.metadata && o.metadata.name}`;

function podSpecs(objects) {
  return objects.filter((o) => o.kind === "Deployment").map((d) => ({ d, spec: d.spec.template.spec }));
}

function findSidecar(spec) {
  const init = (spec.initContainers || []).filter((c) => c.name === SIDECAR);
  const regular = (spec.containers || []).filter((c) => c.name === SIDECAR);
  return { init, regular };
}

function sidecarEnvNames(objects, c) {
  const names = (c.env || []).map((e) => e.name);
  for (const src of c.envFrom || []) {
    if (src.configMapRef) {
      const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === src.configMapRef.name);
      assert(cm, `envFrom ConfigMap ${src.configMapRef.name} is not among the rendered objects`);
      assert(!src.prefix, "envFrom prefix is not expected");
      names.push(...Object.keys(cm.data || {}));
    }
    if (src.secretRef) {
      const s = objects.find((o) => o.kind === "Secret" && o.metadata.name === src.secretRef.name);
      assert(s, `envFrom Secret ${src.secretRef.name} is not among the rendered objects`);
      names.push(...Object.keys(s.data || {}), ...Object.keys(s.stringData || {}));
    }
  }
  return names;
}

function checkSidecarContainer(objects, spec, c, helpText, where) {
  // image entrypoint does the listening; the manifests must not move it
  assert(!c.command, `${where}: command overrides the image ENTRYPOINT (--listen 0.0.0.0:50051)`);
  const ports = (c.ports || []).map((p) => p.containerPort).sort();
  eq(ports, [ADMIN_PORT, GRPC_PORT].sort(), `${where}: container ports`);
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    const p = c[probe];
    assert(p, `${where}: no ${probe}`);
    assert(p.grpc, `${where}: ${probe} is not a grpc probe`);
    eq(p.grpc.port, GRPC_PORT, `${where}: ${probe}.grpc.port`);
    assert(!p.grpc.service, `${where}: ${probe}.grpc.service should be empty (overall server health)`);
  }
  const r = c.resources || {};
  eq(r.requests, { cpu: "50m", memory: "16Mi" }, `${where}: resources.requests`);
  eq(r.limits, { cpu: "500m", memory: "64Mi" }, `${where}: resources.limits`);
  const sc = c.securityContext || {};
  const psc = spec.securityContext || {};
  assert(sc.runAsNonRoot === true || psc.runAsNonRoot === true, `${where}: runAsNonRoot is not set`);
  const uid = sc.runAsUser !== undefined ? sc.runAsUser : psc.runAsUser;
  assert(uid === undefined || uid === RUNTIME_UID, `${where}: runAsUser ${uid}, the image runs as ${RUNTIME_UID}`);
  eq(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
  eq(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
  eq((sc.capabilities || {}).drop, ["ALL"], `${where}: capabilities.drop`);
  assert(!(sc.capabilities || {}).add, `${where}: capabilities are added`);
  assert(!sc.privileged, `${where}: privileged`);

  // every variable is a flag the binary accepts
  const names = sidecarEnvNames(objects, c);
  assert(names.length > 0, `${where}: no UAPI_SIDECAR_* variables`);
  for (const n of names) {
    assert(/^UAPI_SIDECAR_[A-Z0-9_]+$/.test(n), `${where}: variable ${n} is not a UAPI_SIDECAR_* flag`);
    assert(new RegExp(`\\b${n}\\b`).test(helpText), `${where}: ${n} does not appear in uapi-sidecar --help`);
  }
  const env = {};
  for (const src of c.envFrom || []) {
    const cm = src.configMapRef && objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === src.configMapRef.name);
    if (cm) Object.assign(env, cm.data);
  }
  for (const e of c.env || []) if (e.value !== undefined) env[e.name] = e.value;
  eq(env.UAPI_SIDECAR_BACKEND, "auto", `${where}: UAPI_SIDECAR_BACKEND`);
  eq(env.UAPI_SIDECAR_UAPI_URL, "https://pbx.example.com", `${where}: UAPI_SIDECAR_UAPI_URL`);
  eq(env.UAPI_SIDECAR_LOG_FORMAT, "json", `${where}: UAPI_SIDECAR_LOG_FORMAT`);

  // graceful shutdown fits in the pod's grace period
  const graceMs = Number(env.UAPI_SIDECAR_SHUTDOWN_GRACE);
  eq(graceMs, 20000, `${where}: UAPI_SIDECAR_SHUTDOWN_GRACE`);
  eq(spec.terminationGracePeriodSeconds, 30, `${where}: terminationGracePeriodSeconds`);
  let preStopSec = 0;
  const pre = c.lifecycle && c.lifecycle.preStop;
  if (pre && pre.exec) preStopSec = Number(pre.exec.command[pre.exec.command.length - 1]) || 0;
  if (pre && pre.sleep) preStopSec = pre.sleep.seconds;
  assert(graceMs / 1000 + preStopSec < spec.terminationGracePeriodSeconds,
    `${where}: preStop ${preStopSec}s + shutdown grace ${graceMs / 1000}s does not fit in terminationGracePeriodSeconds`);

  // the token Secret is mounted as a directory (not subPath, which never
  // updates) and UAPI_SIDECAR_UAPI_TOKEN_FILE points at its key
  const tokenFile = env.UAPI_SIDECAR_UAPI_TOKEN_FILE;
  assert(tokenFile, `${where}: UAPI_SIDECAR_UAPI_TOKEN_FILE is not set`);
  const mount = (c.volumeMounts || []).find((m) => tokenFile.startsWith(m.mountPath + "/"));
  assert(mount, `${where}: no volume is mounted above ${tokenFile}`);
  assert(!mount.subPath && !mount.subPathExpr, `${where}: the token volume uses subPath, so Secret updates never reach the file`);
  assert(mount.readOnly === true, `${where}: the token volume is not readOnly`);
  const vol = (spec.volumes || []).find((v) => v.name === mount.name);
  assert(vol && vol.secret, `${where}: volume ${mount.name} is not a Secret volume`);
  const secret = objects.find((o) => o.kind === "Secret" && o.metadata.name === vol.secret.secretName);
  assert(secret, `${where}: Secret ${vol.secret.secretName} is not among the rendered objects`);
  const key = tokenFile.slice(mount.mountPath.length + 1);
  assert(key in (secret.stringData || {}) || key in (secret.data || {}), `${where}: Secret has no key ${key}`);
}

function checkDeployments(objects, mode, helpText) {
  const pods = podSpecs(objects);
  assert(pods.length === 1, `expected one Deployment, found ${pods.length}`);
  for (const { d, spec } of pods) {
    const where = objName(d);
    const ann = d.spec.template.metadata.annotations || {};
    eq(ann["prometheus.io/scrape"], "true", `${where}: prometheus.io/scrape`);
    eq(ann["prometheus.io/port"], String(ADMIN_PORT), `${where}: prometheus.io/port`);
    eq(ann["prometheus.io/path"], "/metrics", `${where}: prometheus.io/path`);
    eq((spec.securityContext || {}).runAsNonRoot, true, `${where}: pod runAsNonRoot`);
    const { init, regular } = findSidecar(spec);
    let c;
    if (mode === "native") {
      eq([init.length, regular.length], [1, 0], `${where}: native sidecar (initContainers, containers) count`);
      c = init[0];
      eq(c.restartPolicy, "Always", `${where}: native sidecar restartPolicy`);
    } else {
      eq([init.length, regular.length], [0, 1], `${where}: classic sidecar (initContainers, containers) count`);
      c = regular[0];
      assert(c.restartPolicy === undefined, `${where}: classic sidecar keeps restartPolicy ${c.restartPolicy}`);
      assert(!(spec.initContainers || []).some((x) => x.restartPolicy === "Always"),
        `${where}: classic overlay still has a native sidecar`);
    }
    assert(spec.containers.some((x) => x.name !== SIDECAR), `${where}: no app container`);
    for (const x of [...(spec.initContainers || []), ...spec.containers]) {
      assert(x.resources && x.resources.requests && x.resources.limits, `${where}: container ${x.name} has no resources`);
      const sc = x.securityContext || {};
      eq(sc.allowPrivilegeEscalation, false, `${where}: container ${x.name} allowPrivilegeEscalation`);
    }
    checkSidecarContainer(objects, spec, c, helpText, `${where} ${SIDECAR}`);
  }
  for (const svc of objects.filter((o) => o.kind === "Service")) {
    const dep = pods[0].d.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(svc.spec.selector || {})) eq(dep[k], v, `${objName(svc)} selector ${k}`);
  }
}

// ------------------------------------------------------- Dockerfile ----

function parseDockerfile(text) {
  const joined = text.replace(/\\\r?\n/g, " ");
  const stages = [];
  for (const raw of joined.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^(\w+)\s+([\s\S]*)$/.exec(line);
    assert(m, `Dockerfile: cannot parse ${line}`);
    const instr = m[1].toUpperCase();
    if (instr === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(m[2].trim());
      assert(f, `Dockerfile: bad FROM ${m[2]}`);
      stages.push({ image: f[1], name: f[2], instrs: [] });
    } else {
      assert(stages.length, `Dockerfile: ${instr} before FROM`);
      stages[stages.length - 1].instrs.push({ instr, args: m[2].trim() });
    }
  }
  return stages;
}

function aptPackages(stage) {
  const pkgs = [];
  for (const { instr, args } of stage.instrs) {
    if (instr !== "RUN") continue;
    for (const cmd of args.split(/&&|;/)) {
      const m = /apt-get\s+install\s+(.*)$/.exec(cmd);
      if (m) pkgs.push(...m[1].split(/\s+/).filter((w) => w && !w.startsWith("-")));
    }
  }
  return pkgs;
}

function makefilePackages() {
  const text = fs.readFileSync(path.join(REPO, "Makefile"), "utf8").replace(/\\\n/g, " ");
  const m = /^BUILD_PACKAGES\s*:?=\s*(.*)$/m.exec(text);
  assert(m, "Makefile has no BUILD_PACKAGES");
  return m[1].trim().split(/\s+/);
}

function sh(cmd, args) {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function packageOf(lib) {
  const cands = new Set([lib]);
  try { cands.add(fs.realpathSync(lib)); } catch (_) { /* keep the name */ }
  for (const c of [...cands]) {
    if (c.startsWith("/lib/")) cands.add("/usr" + c);
    if (c.startsWith("/lib64/")) cands.add("/usr" + c);
    if (c.startsWith("/usr/lib")) cands.add(c.slice(4));
  }
  for (const c of cands) {
    try {
      const out = sh("dpkg", ["-S", c]).trim();
      return out.split("\n")[0].split(":")[0].split(",")[0].trim();
    } catch (_) { /* next candidate */ }
  }
  throw new Error(`dpkg -S finds no package owning ${lib}`);
}

// The packages installed with `pkgs`: their Depends and Pre-Depends,
// recursively, as this (Debian 12) machine's dpkg database states them.
function dependencyClosure(pkgs) {
  const installed = (p) => {
    try { return /^install ok installed$/.test(sh("dpkg-query", ["-W", "-f=${Status}", p]).trim()); }
    catch (_) { return false; }
  };
  const seen = new Set();
  const todo = [...pkgs];
  while (todo.length) {
    const p = todo.pop();
    if (seen.has(p)) continue;
    seen.add(p);
    let deps = "";
    try { deps = sh("dpkg-query", ["-W", "-f=${Depends}, ${Pre-Depends}", p]); } catch (_) { continue; }
    for (const group of deps.split(",").map((s) => s.trim()).filter(Boolean)) {
      const alts = group.split("|").map((a) => a.trim().split(/[\s(:]/)[0]);
      const pick = alts.find(installed) || alts[0];
      if (!seen.has(pick)) todo.push(pick);
    }
  }
  return seen;
}

// ------------------------------------------------------------- main ----

function main() {
  const binary = process.argv[2] ? path.resolve(process.argv[2]) : path.join(REPO, "bazel-bin", "src", "uapi-sidecar");
  let helpText = "";
  check(`uapi-sidecar --help runs (${path.relative(REPO, binary)})`, () => {
    helpText = sh(binary, ["--help"]);
    assert(/UAPI_SIDECAR_LISTEN/.test(helpText), "--help does not list UAPI_SIDECAR_* variables");
  });

  // YAML style
  for (const f of walkFiles(DEPLOY, (p) => /\.ya?ml$/.test(p))) {
    check(`yaml lint ${path.relative(REPO, f)}`, () => lintYaml(f));
  }

  // render and validate
  const rendered = {};
  for (const [mode, dir] of [["native", BASE], ["classic", CLASSIC]]) {
    const label = path.relative(REPO, dir);
    check(`render ${label}`, () => {
      rendered[mode] = render(dir);
      const kinds = rendered[mode].map((o) => o.kind).sort();
      eq(kinds, ["ConfigMap", "Deployment", "Secret", "Service"], `${label} kinds`);
    });
    for (const o of rendered[mode] || []) {
      check(`${label}: ${objName(o)} validates against the Kubernetes schema`, () => validateObject(o));
    }
    if (rendered[mode]) {
      check(`${label}: deployment invariants (${mode} sidecar)`, () => checkDeployments(rendered[mode], mode, helpText));
    }
  }

  // the checks themselves catch what they are meant to catch
  check("schema check rejects an unknown field and a bad type", () => {
    const d = clone(rendered.native.find((o) => o.kind === "Deployment"));
    d.spec.template.spec.initContainers[0].restartpolicy = "Always";
    let threw = false;
    try { validateObject(d); } catch (_) { threw = true; }
    assert(threw, "a misspelt restartpolicy was accepted");
    const e = clone(rendered.native.find((o) => o.kind === "Deployment"));
    e.spec.template.spec.initContainers[0].ports[0].containerPort = "50051";
    threw = false;
    try { validateObject(e); } catch (_) { threw = true; }
    assert(threw, "a string containerPort was accepted");
  });
  check("the schema knows Container.restartPolicy (native sidecars, Kubernetes 1.29+)", () => {
    const { props } = parseDts(path.join(MODELS, "kubernetes-models", "v1", "Container.d.ts"));
    assert("restartPolicy" in props, "kubernetes-models' Container has no restartPolicy");
  });
  check("invariants reject a sidecar with an unknown variable and an http probe", () => {
    const objs = clone(rendered.native);
    objs.find((o) => o.kind === "ConfigMap").data.UAPI_SIDECAR_NO_SUCH_FLAG = "1";
    let threw = false;
    try { checkDeployments(objs, "native", helpText); } catch (_) { threw = true; }
    assert(threw, "UAPI_SIDECAR_NO_SUCH_FLAG was accepted");
    const objs2 = clone(rendered.native);
    objs2.find((o) => o.kind === "Deployment").spec.template.spec.initContainers[0].livenessProbe =
      { httpGet: { path: "/healthz", port: 9090 } };
    threw = false;
    try { checkDeployments(objs2, "native", helpText); } catch (_) { threw = true; }
    assert(threw, "an httpGet liveness probe was accepted");
  });

  // Dockerfile
  const dockerfile = path.join(DEPLOY, "Dockerfile");
  let stages = [];
  check("Dockerfile parses into a debian:12 build stage and a debian:12-slim runtime stage", () => {
    stages = parseDockerfile(fs.readFileSync(dockerfile, "utf8"));
    eq(stages.map((s) => s.image), ["debian:12", "debian:12-slim"], "FROM images");
    assert(stages[0].name, "the build stage has no name");
    assert(stages[0].instrs.some((i) => i.instr === "RUN" && /bazel build\s+\/\/src:uapi-sidecar/.test(i.args)),
      "the build stage does not run bazel build //src:uapi-sidecar");
    const copy = stages[1].instrs.find((i) => i.instr === "COPY" && i.args.includes(`--from=${stages[0].name}`));
    assert(copy, "the runtime stage does not copy from the build stage");
  });
  check("Dockerfile build stage installs the Makefile's BUILD_PACKAGES", () => {
    const have = new Set(aptPackages(stages[0]));
    const missing = makefilePackages().filter((p) => !have.has(p));
    assert(missing.length === 0, `missing: ${missing.join(" ")}`);
  });
  check("Dockerfile runtime stage: numeric non-root USER, EXPOSE, ENTRYPOINT", () => {
    const rt = stages[1].instrs;
    const users = rt.filter((i) => i.instr === "USER");
    assert(users.length > 0, "no USER");
    const user = users[users.length - 1].args;
    assert(/^[0-9]+(:[0-9]+)?$/.test(user), `USER ${user} is not numeric`);
    eq(Number(user.split(":")[0]), RUNTIME_UID, "USER uid");
    const exposed = rt.filter((i) => i.instr === "EXPOSE").flatMap((i) => i.args.split(/\s+/)).map((p) => p.split("/")[0]);
    eq(exposed.map(Number).sort(), [ADMIN_PORT, GRPC_PORT].sort(), "EXPOSE");
    const ep = rt.filter((i) => i.instr === "ENTRYPOINT");
    assert(ep.length === 1, "expected one ENTRYPOINT");
    const argv = JSON.parse(ep[0].args);
    assert(/uapi-sidecar$/.test(argv[0]), `ENTRYPOINT runs ${argv[0]}`);
    const flag = (f) => { const i = argv.indexOf(f); return i > 0 ? argv[i + 1] : undefined; };
    eq(flag("--listen"), `0.0.0.0:${GRPC_PORT}`, "--listen");
    eq(flag("--admin-listen"), `0.0.0.0:${ADMIN_PORT}`, "--admin-listen");
    for (const f of argv.filter((a) => a.startsWith("--"))) {
      assert(helpText.includes(f.split("=")[0]), `ENTRYPOINT flag ${f} is not in --help`);
    }
    const copyDest = rt.find((i) => i.instr === "COPY").args.split(/\s+/).pop();
    eq(copyDest, argv[0], "the binary's path (COPY destination vs ENTRYPOINT)");
  });
  check("Dockerfile runtime apt list covers every library ldd shows for the binary", () => {
    const out = sh("ldd", [binary]);
    const libs = [];
    for (const line of out.split("\n")) {
      let m;
      if ((m = /=>\s+not found/.exec(line))) throw new Error(`ldd: ${line.trim()}`);
      if ((m = /=>\s+(\/\S+)/.exec(line)) || (m = /^\s*(\/\S+)\s+\(/.exec(line))) libs.push(m[1]);
    }
    assert(libs.length > 0, "ldd shows no library");
    const runtime = aptPackages(stages[1]);
    const closure = dependencyClosure(runtime);
    const uncovered = [];
    const direct = [];
    for (const lib of libs) {
      const pkg = packageOf(lib);
      if (!closure.has(pkg)) uncovered.push(`${path.basename(lib)} (${pkg})`);
      if (runtime.includes(pkg)) direct.push(pkg);
    }
    assert(uncovered.length === 0, `not installed by the runtime stage: ${uncovered.join(", ")}`);
    // the libraries the binary links itself are listed by name, not left
    // to chance dependencies
    const needed = sh("objdump", ["-p", binary]).split("\n")
      .map((l) => /^\s*NEEDED\s+(\S+)/.exec(l)).filter(Boolean).map((m) => m[1]);
    for (const so of needed) {
      const lib = libs.find((l) => path.basename(l) === so);
      assert(lib, `NEEDED ${so} is not in ldd's output`);
      const pkg = packageOf(lib);
      if (pkg === "libc6") continue; // in every Debian image
      assert(runtime.includes(pkg), `${so} (${pkg}) is linked directly but not named in the runtime apt list`);
    }
  });
  check("Dockerfile runtime apt list names the library loaded at run time (libcurl)", () => {
    const src = fs.readFileSync(path.join(REPO, "src", "upstream", "curl_lib.c"), "utf8");
    const m = /#define CURL_SONAME "([^"]+)"/.exec(src);
    assert(m, "CURL_SONAME not found in src/upstream/curl_lib.c");
    const line = sh("ldconfig", ["-p"]).split("\n").find((l) => l.trim().startsWith(m[1] + " "));
    assert(line, `${m[1]} is not installed here`);
    const pkg = packageOf(line.split("=>").pop().trim());
    assert(aptPackages(stages[1]).includes(pkg), `${m[1]} (${pkg}) is not in the runtime apt list`);
  });
  check("Dockerfile.dockerignore keeps build outputs and .git out of the context", () => {
    const lines = fs.readFileSync(path.join(DEPLOY, "Dockerfile.dockerignore"), "utf8").split("\n").map((l) => l.trim());
    for (const p of [".git", "bazel-*", "build", "**/node_modules"]) assert(lines.includes(p), `missing ${p}`);
  });

  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main();
