"""The status page's inline style sheet and script (no outside assets: it works offline).

The script only improves the page: it refreshes the header and the cards in
place (keeping the scroll position and the filter form), shows times in the
browser's own zone and keeps "5m ago" current, and submits the filter form
when a select or the checkbox changes.  Without it, a <noscript> meta refresh
reloads the page and the form's button submits.
"""

CSS = """
:root{color-scheme:light dark;--ok:#1a7f37;--unknown:#6e7781;--warning:#9a6700;--critical:#cf222e;
--bg:#f6f8fa;--card:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--link:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--fg:#e6edf3;--muted:#9198a1;
--line:#30363d;--link:#4493f8}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--fg)}
a{color:var(--link)}
header{padding:.75rem 1rem;color:#fff;background:var(--level)}
header .top{display:flex;flex-wrap:wrap;align-items:baseline;gap:.25rem 1rem}
header h1{margin:0;font-size:1.3rem}
header .overall{font-size:1.3rem;font-weight:700}
header .meta{opacity:.95}
header.stale{filter:grayscale(1)}
.nw,time,.fact,.pill,.code,.reason,.label{white-space:nowrap}
nav.summary{display:flex;flex-wrap:wrap;gap:.35rem;margin-top:.5rem}
.pill{display:inline-block;padding:.1rem .55rem;border-radius:1rem;text-decoration:none;
color:#fff;background:var(--level);border:1px solid rgba(255,255,255,.7);font-weight:600}
.pill.current{outline:2px solid #fff;outline-offset:1px}
.pill.all{background:rgba(0,0,0,.25)}
.pill.zero{opacity:.55}
form.filters{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;padding:.6rem .75rem;
max-width:90rem;margin:0 auto}
form.filters input[type=search]{flex:1 1 12rem;min-width:0;font:inherit;padding:.25rem .4rem}
form.filters select,form.filters button{font:inherit;max-width:100%}
main{padding:0 .75rem 1rem;max-width:90rem;margin:0 auto}
.ghead{display:flex;flex-wrap:wrap;align-items:baseline;gap:0 .75rem;margin:1rem .25rem .5rem}
h2{font-size:1.05rem;margin:0;color:var(--fg);overflow:hidden;text-overflow:ellipsis;
white-space:nowrap;max-width:100%}
.gcount{color:var(--muted);font-size:.85rem;white-space:nowrap}
ul.probes{list-style:none;margin:0;padding:0;display:grid;gap:.6rem;
grid-template-columns:repeat(auto-fill,minmax(min(100%,21rem),1fr))}
li.probe{background:var(--card);border:1px solid var(--line);border-left:.4rem solid var(--level);
border-radius:.4rem;padding:.55rem .7rem;min-width:0}
.head{display:flex;gap:.5rem;align-items:baseline;min-width:0}
.badge{flex:none;font-size:.75rem;font-weight:700;padding:.05rem .4rem;border-radius:.25rem;
color:#fff;background:var(--level)}
.name,.target{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;min-width:0}
.name{font-weight:600;flex:1 1 auto}
.state{flex:none;color:var(--muted);font-size:.85rem}
.where{display:flex;gap:.4rem;color:var(--muted);font-size:.85rem;min-width:0}
.kind{flex:none}
.failure{margin:.3rem 0 0;font-size:.85rem;display:flex;flex-wrap:wrap;gap:0 .8rem}
.failure b{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
.facts{display:flex;flex-wrap:wrap;gap:.1rem .9rem;margin:.3rem 0;color:var(--muted);font-size:.85rem}
.strip{display:flex;gap:1px;height:1.1rem;margin:.35rem 0}
.strip i{flex:1 1 0;max-width:.6rem;border-radius:1px;background:var(--ok)}
.strip i.down{background:var(--critical)}
.threshold{font-size:.85rem;color:var(--muted)}
.threshold.reached{color:var(--critical);font-weight:600}
.labels{display:flex;flex-wrap:wrap;gap:.1rem .6rem;color:var(--muted);font-size:.8rem}
.label{overflow:hidden;text-overflow:ellipsis;max-width:100%}
.message{margin:.3rem 0 0;font-size:.9rem;overflow-wrap:break-word;white-space:pre-wrap}
.links{display:flex;flex-wrap:wrap;gap:.1rem .9rem;margin-top:.35rem;font-size:.85rem}
.level-OK{--level:var(--ok)}.level-Unknown{--level:var(--unknown)}
.level-Warning{--level:var(--warning)}.level-Critical{--level:var(--critical)}
li.inactive{opacity:.6}
nav.pages{display:flex;flex-wrap:wrap;gap:.3rem 1rem;justify-content:center;margin:1rem 0}
footer{color:var(--muted);font-size:.8rem;padding:1rem;text-align:center}
footer a{color:inherit}
"""

JS = """
(function(){
"use strict";
var body=document.body,every=+body.getAttribute("data-refresh")||10,timer=null;
function ago(s){s=Math.max(0,Math.floor(s));
 var u=[["d",86400],["h",3600],["m",60]];
 for(var i=0;i<u.length;i++){if(s>=u[i][1])return Math.floor(s/u[i][1])+u[i][0]+" ago";}
 return s+"s ago";}
function localize(){
 var now=Date.now(),ts=document.querySelectorAll("time[datetime]");
 for(var i=0;i<ts.length;i++){var t=ts[i],d=new Date(t.getAttribute("datetime"));
  if(isNaN(d.getTime()))continue;
  t.title=d.toLocaleString();
  if(t.hasAttribute("data-ago"))t.textContent=ago((now-d.getTime())/1000);
  else if(t.hasAttribute("data-clock"))t.textContent=d.toLocaleTimeString();}
 body.setAttribute("data-localized",String(now));}
function swap(doc,id){var old=document.getElementById(id),fresh=doc.getElementById(id);
 if(old&&fresh)old.replaceWith(document.importNode(fresh,true));}
function refresh(){
 fetch(location.href,{cache:"no-store",headers:{"Accept":"text/html"}})
 .then(function(r){if(!r.ok)throw new Error("HTTP "+r.status);return r.text();})
 .then(function(html){var doc=new DOMParser().parseFromString(html,"text/html");
  swap(doc,"top");swap(doc,"cards");document.title=doc.title;localize();
  body.setAttribute("data-refreshes",String((+body.getAttribute("data-refreshes")||0)+1));})
 .catch(function(){var h=document.getElementById("top");if(h)h.classList.add("stale");})
 .then(schedule);}
function schedule(){clearTimeout(timer);timer=setTimeout(refresh,every*1000);}
var form=document.getElementById("filters");
if(form){var auto=form.querySelectorAll("select,input[type=checkbox]");
 for(var i=0;i<auto.length;i++)auto[i].addEventListener("change",function(){form.submit();});}
localize();setInterval(localize,15000);schedule();
})();
"""
