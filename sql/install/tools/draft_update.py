#!/usr/bin/env python3
"""Writes an update script from two install scripts and a file of hand-written statements.

    make update-scripts         # runs the command below for each update (Makefile, RELEASES)
    python3 sql/install/tools/draft_update.py sql/install/released/pg_dialer--OLD.sql sql/install/pg_dialer--NEW.sql OUT.sql [HAND.sql]

Splits both scripts into statements (quotes, dollar quotes and comments understood) and writes
every statement of NEW that OLD does not have, in NEW's order: new objects as they are, changed
functions as CREATE OR REPLACE (DROP first when the return type changed), changed views as
CREATE OR REPLACE VIEW, every `... IN SCHEMA` privilege statement and the GRANTs after it again.
A changed CREATE TABLE, TYPE or DOMAIN, or a function whose arguments changed, is left as a
"-- MANUAL" line for a hand-written ALTER; DRAFT.gone lists OLD's statements NEW no longer has.
test/integration/upgrade.test.js then says whether the result equals a fresh install.

HAND.sql (the change file, e.g. sql/install/changes/pg_dialer--0.1.0--0.2.0.sql) holds what a draft cannot know,
in blocks that each start with a line `-- @header`, `-- @replace KIND NAME` (written in place
of the "-- MANUAL" line for that table, type, domain or re-signed function) or `-- @end` (appended).
With HAND given, OUT is the finished update script and the tool fails when a "-- MANUAL" line
has no block, or when an object of OLD that NEW no longer has is not named by a block's
`-- @covers KIND NAME` line (a DROP is the maintainer's decision, never the tool's).
"""
import re
import sys


def split(sql):
    """Split SQL text into statements (keeps text), aware of quotes, dollar quotes, comments."""
    out=[]; i=0; n=len(sql); start=0
    while i<n:
        c=sql[i]
        if c=='-' and sql.startswith('--',i):
            j=sql.find('\n',i); i = n if j<0 else j+1; continue
        if c=='/' and sql.startswith('/*',i):
            j=sql.find('*/',i+2); i=n if j<0 else j+2; continue
        if c=="'":
            i+=1
            while i<n:
                if sql[i]=="'" :
                    if i+1<n and sql[i+1]=="'": i+=2; continue
                    break
                i+=1
            i+=1; continue
        if c=='"':
            j=sql.find('"',i+1); i=j+1; continue
        if c=='$':
            m=re.match(r'\$[A-Za-z_0-9]*\$', sql[i:])
            if m:
                tag=m.group(0); j=sql.find(tag,i+len(tag)); i=j+len(tag); continue
        if c==';':
            out.append(sql[start:i+1]); start=i+1
        i+=1
    rest=sql[start:].strip()
    if rest: out.append(rest)
    return out

def strip_comments(s):
    # remove leading comment lines/blocks for classification
    t=s.strip()
    while True:
        if t.startswith('\\echo'):
            t=t.split('\n',1)[1].strip() if '\n' in t else ''; continue
        if t.startswith('--'):
            t=t.split('\n',1)[1].strip() if '\n' in t else ''; continue
        if t.startswith('/*'):
            t=t[t.find('*/')+2:].strip(); continue
        break
    return t

def norm(s):
    return re.sub(r'\s+',' ',s).strip()

def key(stmt):
    t=strip_comments(stmt)
    m=re.match(r'CREATE (OR REPLACE )?FUNCTION\s+([\w.]+)\s*\(', t, re.I)
    if m:
        # argument list: balanced parens
        i=t.index('(',m.start(2)); d=0; j=i
        while True:
            if t[j]=='(': d+=1
            elif t[j]==')':
                d-=1
                if d==0: break
            j+=1
        return ('function', m.group(2), norm(t[i+1:j]))
    m=re.match(r'CREATE TABLE\s+([\w.]+)', t, re.I)
    if m: return ('table', m.group(1))
    m=re.match(r'CREATE (OR REPLACE )?VIEW\s+([\w.]+)', t, re.I)
    if m: return ('view', m.group(2))
    m=re.match(r'CREATE TYPE\s+([\w.]+)', t, re.I)
    if m: return ('type', m.group(1))
    m=re.match(r'CREATE DOMAIN\s+([\w.]+)', t, re.I)
    if m: return ('domain', m.group(1))
    return ('stmt', norm(t))


def parse_hand(path):
    """Blocks of the hand file: {'header': text, 'end': [text], 'replace': {(kind, name): text}, 'covers': set()}."""
    h={'header':'', 'end':[], 'replace':{}, 'covers':set()}
    cur=None; buf=[]
    def flush():
        if cur is None: return
        text=''.join(buf).strip('\n')+'\n'
        if cur[0]=='header': h['header']=text
        elif cur[0]=='end': h['end'].append(text)
        else: h['replace'][cur[1]]=text
    for line in open(path):
        m=re.match(r'--\s*@(header|end|replace|covers)\b\s*(\w+)?\s*([\w.]+)?\s*$', line)
        if m and m.group(1)=='covers':
            h['covers'].add((m.group(2), m.group(3))); continue
        if m:
            flush(); buf=[]
            cur=(m.group(1), (m.group(2), m.group(3)) if m.group(1)=='replace' else None)
            continue
        buf.append(line)
    flush()
    return h

missing=[]
def manual_line(kind, name, line):
    """The hand block for a changed table/type or re-signed function, else the MANUAL line."""
    if hand is not None and (kind, name) in hand['replace']:
        hand['used'].add((kind, name))
        return hand['replace'][(kind, name)]
    missing.append(line.strip())
    return line

hand=parse_hand(sys.argv[4]) if len(sys.argv)>4 else None
if hand is not None: hand['used']=set()
old_sql=open(sys.argv[1]).read(); new_sql=open(sys.argv[2]).read()
olds=split(old_sql); news=split(new_sql)
okeys={}; 
for s in olds: okeys.setdefault(key(s),[]).append(s)
oldnorm=set(norm(strip_comments(s)) for s in olds)
out=[]; manual=[]
def returns(s):
    t=norm(strip_comments(s))
    m=re.search(r'\)\s*RETURNS\s+(.*?)\s+(LANGUAGE|AS|SET|SECURITY|STABLE|VOLATILE|IMMUTABLE|STRICT|PARALLEL|CALLED|RETURNS NULL|COST|ROWS)\b', t, re.I)
    return m.group(1) if m else None
def params(s):
    k=key(s); return k[2] if k[0]=='function' else None
newkeys=set()
after_blanket=False
for s in news:
    t=strip_comments(s)
    if not t or t.startswith('\\echo'): continue
    k=key(s); newkeys.add(k)
    n=norm(t)
    blanket=bool(re.search(r'\bIN SCHEMA\b', n, re.I))
    if blanket: after_blanket=True
    if n in oldnorm and not blanket and not (after_blanket and re.match(r'GRANT\b', n, re.I)): continue
    if k[0]=='function':
        # same name, same arg types?  old may have same name with different arglist
        if k in okeys:
            o=okeys[k][0]
            if returns(o)!=returns(s):
                out.append(f"-- return type changed\nDROP FUNCTION {k[1]}({k[2]});\n"+t+'\n')
            else:
                out.append(re.sub(r'^CREATE (OR REPLACE )?FUNCTION','CREATE OR REPLACE FUNCTION',t,flags=re.I)+'\n')
        else:
            same=[kk for kk in okeys if kk[0]=='function' and kk[1]==k[1]]
            if same:
                out.append(manual_line('function', k[1], "-- MANUAL? function %s had another signature in 0.1.0: %s\n"%(k[1],[x[2] for x in same])))
            out.append(t+'\n')
    elif k[0] in ('table','type','domain') and k in okeys:
        manual.append(('changed '+k[0], k[1], t))
        out.append(manual_line(k[0], k[1], f"-- MANUAL: {k[0]} {k[1]} changed\n"))
    elif k[0]=='view' and k in okeys:
        out.append(re.sub(r'^CREATE (OR REPLACE )?VIEW','CREATE OR REPLACE VIEW',t,flags=re.I)+'\n')
    else:
        out.append(t+'\n')
gone=[]
for s in olds:
    t=strip_comments(s)
    if not t or t.startswith('\\echo'): continue
    k=key(s)
    n=norm(t)
    if k[0]=='stmt' and n not in set(norm(strip_comments(x)) for x in news):
        gone.append(t)
    elif k[0]!='stmt' and k not in newkeys:
        gone.append(t)
if hand is None:
    open(sys.argv[3],'w').write('\n'.join(out))
    with open(sys.argv[3]+'.gone','w') as f:
        for g in gone: f.write(g+'\n\n')
    with open(sys.argv[3]+'.manual','w') as f:
        for a,b,c in manual: f.write(f'-- {a} {b}\n{c}\n\n')
    print(len(out),'emitted;',len(gone),'gone;',len(manual),'manual')
    sys.exit(0)
errors=list(missing)
for g in gone:
    k=key(g)
    if k[0]!='stmt' and (k[0], k[1]) not in hand['covers'] and (k[0], k[1]) not in hand['used']:
        errors.append(f'{k[0]} {k[1]} is gone from the new install script: name it in a "-- @covers {k[0]} {k[1]}" line of a block that drops or replaces it')
for k in hand['replace']:
    if k not in hand['used']:
        errors.append(f'hand block "@replace {k[0]} {k[1]}" matches no changed object')
if errors:
    sys.stderr.write('draft_update: '+'\n  '.join(['the update script needs hand-written statements:']+errors)+'\n')
    sys.exit(1)
open(sys.argv[3],'w').write(hand['header']+'\n'+'\n'.join(out)+('\n'+'\n'.join(hand['end']) if hand['end'] else ''))
print(sys.argv[3]+':', len(out),'statements drafted,', len(hand['used']),'hand blocks placed,', len(hand['end']),'appended')
