// The dashboard's stylesheet, inlined into the page (one request less, nothing to embed separately).
// System fonts only: a web font would be a request to another host or another asset to ship.
export const DASHBOARD_CSS = `
:root{color-scheme:light dark;--fg:#1b1d22;--muted:#5d6470;--bg:#f6f7f9;--card:#fff;--line:#d9dde3;--accent:#2458d6;--ok:#1c8a4a;--warn:#b26a00;--bad:#c4302b}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8ec;--muted:#9aa2ae;--bg:#14161a;--card:#1d2026;--line:#323741;--accent:#6d9bff;--ok:#45c47c;--warn:#f0a73a;--bad:#ff6b63}}
*{box-sizing:border-box}
html,body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.25rem .75rem;padding:.5rem 1rem;background:var(--card);border-bottom:1px solid var(--line)}
header strong{font-size:1.1rem;margin-right:.5rem}
nav{display:flex;flex-wrap:wrap;gap:.25rem}
nav a{padding:.3rem .6rem;border-radius:6px;color:var(--fg);text-decoration:none}
nav a.on{background:var(--accent);color:#fff}
main{max-width:1100px;margin:0 auto;padding:1rem}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.75rem 1rem;margin-bottom:1rem;overflow-wrap:anywhere}
h2{font-size:1.05rem;margin:.1rem 0 .6rem}
h3{font-size:.95rem;margin:.6rem 0 .3rem}
.row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}
.grow{flex:1 1 12rem;min-width:0}
.card{border:1px solid var(--line);border-radius:6px;padding:.5rem .75rem;margin:.5rem 0}
.muted{color:var(--muted);font-size:.9em}
.tag{display:inline-block;padding:0 .4rem;border-radius:4px;border:1px solid var(--line);font-size:.8em;margin-right:.25rem}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
.banner{border:1px solid var(--warn);background:color-mix(in srgb,var(--warn) 12%,transparent);padding:.5rem .75rem;border-radius:6px;margin:.5rem 0}
.banner.bad{border-color:var(--bad);background:color-mix(in srgb,var(--bad) 12%,transparent);color:inherit}
button{font:inherit;padding:.3rem .7rem;border-radius:6px;border:1px solid var(--line);background:var(--card);color:var(--fg);cursor:pointer}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}
button.danger{color:var(--bad)}
button:disabled{opacity:.5;cursor:default}
input,select,textarea{font:inherit;padding:.3rem .45rem;border-radius:6px;border:1px solid var(--line);background:var(--bg);color:var(--fg);max-width:100%}
textarea{width:100%;resize:vertical}
label{display:inline-flex;flex-direction:column;font-size:.85em;color:var(--muted);gap:.15rem}
.bar{height:.8rem;border-radius:4px;background:var(--line);overflow:hidden;display:flex;position:relative}
.bar>span{display:block;height:100%;background:var(--accent)}
.bar>span:nth-child(2n){background:var(--ok)}
.bar>i{position:absolute;top:0;bottom:0;width:2px;background:var(--bad)}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.2rem .4rem;border-bottom:1px solid var(--line);font-size:.9em;overflow-wrap:normal}
.scroll{overflow-x:auto}
.msg{padding:.4rem .6rem;border-radius:6px;margin:.4rem 0;white-space:pre-wrap}
.msg.user{background:color-mix(in srgb,var(--accent) 12%,transparent)}
.msg.assistant{background:var(--bg)}
details{color:var(--muted);margin:.2rem 0}
code{font-size:.9em;word-break:break-all}
dialog,.overlay{position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;align-items:center;justify-content:center;padding:1rem;z-index:10}
.overlay>div{background:var(--card);border-radius:8px;padding:1rem;max-width:26rem;width:100%}
`;
