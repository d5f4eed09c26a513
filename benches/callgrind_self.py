"""Self cost per function in a callgrind dump, per request: what `ANNOTATE=1
bash benches/instructions.sh` prints.

    python3 benches/callgrind_self.py FILE REQUESTS [TOP]

callgrind_annotate is not used for this: in a dump taken after `callgrind_control -z`, the
call that started each thread (clone -> start_thread) began before the zeroing, and
callgrind_annotate books that call's whole cost on `clone` itself (100 %, nothing else
listed). Here a call's cost line (the one after `calls=`) is the callee's inclusive cost
and is skipped; every other cost line is the current function's own.
"""
import collections
import re
import sys


def main(path, requests, top):
    names = {"fn": {}, "ob": {}}
    own = collections.Counter()
    function = obj = None
    call_cost_next = False

    def name(kind, token):
        # Names may be compressed: "(id) name" the first time, "(id)" after.
        m = re.match(r"\((\d+)\)(?: (.*))?$", token)
        if not m:
            return token
        if m.group(2):
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), token)

    with open(path) as lines:
        for line in lines:
            line = line.rstrip("\n")
            key, _, value = line.partition("=")
            if key in ("fn", "cfn"):
                callee = name("fn", value)
                if key == "fn":
                    function = (callee, obj)
            elif key in ("ob", "cob"):
                o = name("ob", value)
                if key == "ob":
                    obj = o
            elif key == "calls":
                call_cost_next = True
            elif line[:1].isdigit() or line[:1] in ("+", "-", "*"):
                fields = line.split()
                if call_cost_next:
                    call_cost_next = False
                elif len(fields) > 1 and function:
                    own[function] += int(fields[1])
    total = sum(own.values())
    print(f"  {total // requests} instructions per request, own cost by function:")
    for (function, obj), cost in own.most_common(top):
        library = (obj or "?").rsplit("/", 1)[-1]
        print(f"  {cost // requests:7d}  {100 * cost / total:5.1f} %  {function[:80]}  [{library}]")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 30)
