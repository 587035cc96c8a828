#!/usr/bin/env python3
"""Checks that every public declaration of the Swift API has a doc comment.

Usage: scripts/check-api-docs.py FILE_OR_FOLDER...

A declaration is public when it says `public` or `open`, or when it is a
case of a public enum or a requirement of a public protocol. Each needs a
`///` comment right above it (attributes may sit in between). Functions,
initialisers and subscripts also need `- Parameter`/`- Parameters:` when
they take parameters, `- Returns:` when they return something, and
`- Throws:` when they throw, as swift-system documents its API.
Declarations under `@_spi` (the C API's Swift side, which include/portal
documents) need the comment only.

Prints one line per problem (`path:line: what is missing`) and exits 1 if
there is any. It reads the source, not a symbol graph: it needs no build.
"""
import os
import re
import sys

DECL_KEYWORDS = r"(func|init\??|var|let|struct|class|enum|protocol|typealias|subscript|case|actor|associatedtype)"
MODIFIER = r"(?:@\w+(?:\([^)]*\))?|nonisolated(?:\(nonsending\))?|final|static|class|override|mutating|nonmutating|convenience|required|indirect|private\(set\)|package\(set\)|internal\(set\)|fileprivate\(set\))"
PUBLIC_DECL = re.compile(r"^\s*(?:" + MODIFIER + r"\s+)*(?:public|open)\s+(?:" + MODIFIER + r"\s+)*" + DECL_KEYWORDS + r"\b")
MEMBER_DECL = re.compile(r"^\s*(?:" + MODIFIER + r"\s+)*" + DECL_KEYWORDS + r"\b")
CONTAINER = re.compile(r"\b(?:public|open)\s+(?:" + MODIFIER + r"\s+)*(enum|protocol|struct|class|actor|extension)\b")
ATTRIBUTE_LINE = re.compile(r"^\s*@\w+(?:\([^)]*\))?(?:\s+@\w+(?:\([^)]*\))?)*\s*$")


def code_of(line, in_multiline):
    """The line without comments and string contents, and whether a
    multi-line string literal is still open at its end."""
    out = []
    i = 0
    in_string = False
    while i < len(line):
        if in_multiline:
            end = line.find('"""', i)
            if end < 0:
                return "".join(out), True
            i = end + 3
            in_multiline = False
            continue
        if line.startswith('"""', i):
            in_multiline = True
            i += 3
            continue
        c = line[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == '"':
            in_string = True
            i += 1
            continue
        if line.startswith("//", i):
            break
        out.append(c)
        i += 1
    return "".join(out), in_multiline


def balanced_parameters(text, start):
    """The text between the parenthesis at `start` and its match, and the
    index after the match (None when it does not close in `text`)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
    return None, None


def signature_problems(signature, doc):
    """What a function's, initialiser's or subscript's doc comment lacks."""
    match = re.search(r"\b(func\s+(?:\w+|[^\s(<]+)|init\??|subscript)\s*(<[^>]*(?:<[^>]*>[^>]*)*>)?\s*\(", signature)
    if not match:
        return []
    parameters, after = balanced_parameters(signature, match.end() - 1)
    if parameters is None:
        return []
    problems = []
    tail = signature[after:]
    tail = tail.split("{")[0]
    tail = re.split(r"\bwhere\b", tail)[0]
    if parameters.strip() and not re.search(r"- Parameters?\b", doc):
        problems.append("no '- Parameter(s):' for its parameters")
    returns = re.search(r"->\s*(.+)$", tail.strip())
    if returns and returns.group(1).strip() not in ("Void", "()") and "- Returns:" not in doc:
        problems.append("no '- Returns:'")
    if re.search(r"\b(throws|rethrows)\b", tail) and "- Throws:" not in doc:
        problems.append("no '- Throws:'")
    return problems


def check_file(path):
    problems = []
    lines = open(path, encoding="utf-8").read().split("\n")
    codes = []
    in_multiline = False
    for line in lines:
        code, in_multiline = code_of(line, in_multiline)
        codes.append(code)
    # (depth of the members, kind) of the public enums and protocols we are in.
    containers = []
    depth = 0
    for index, line in enumerate(lines):
        code = codes[index]
        stripped = line.strip()
        is_public = bool(PUBLIC_DECL.match(code))
        if not is_public and containers and containers[-1][0] == depth and MEMBER_DECL.match(code):
            keyword = MEMBER_DECL.match(code).group(1)
            kind = containers[-1][1]
            if (kind == "enum" and keyword == "case") or kind == "protocol":
                is_public = not re.match(r"^\s*(private|fileprivate|internal|package)\b", code)
        if is_public and not stripped.startswith("case .") and "extension" not in code.split("{")[0].split():
            doc_lines = []
            above = index - 1
            while above >= 0 and ATTRIBUTE_LINE.match(lines[above]):
                above -= 1
            while above >= 0 and lines[above].strip().startswith("///"):
                doc_lines.insert(0, lines[above].strip())
                above -= 1
            attributes = " ".join(lines[k] for k in range(above + 1, index + 1))
            name = stripped[:70]
            if not doc_lines:
                problems.append(f"{path}:{index + 1}: no doc comment: {name}")
            elif "@_spi" not in attributes:
                doc = "\n".join(doc_lines)
                signature = code
                k = index
                while "{" not in signature and k + 1 < len(lines) and signature.count("(") > signature.count(")"):
                    k += 1
                    signature += " " + codes[k]
                if re.search(r"\b(func|init\??|subscript)\b", code.split("=")[0]):
                    for problem in signature_problems(signature, doc):
                        problems.append(f"{path}:{index + 1}: {problem}: {name}")
        container = CONTAINER.search(code)
        opens = code.count("{")
        closes = code.count("}")
        depth += opens - closes
        if container and opens > closes and container.group(1) in ("enum", "protocol"):
            containers.append((depth, container.group(1)))
        while containers and depth < containers[-1][0]:
            containers.pop()
    return problems


def swift_files(paths):
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in sorted(os.walk(path)):
                for name in sorted(names):
                    if name.endswith(".swift"):
                        yield os.path.join(root, name)
        else:
            yield path


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().split("\n")[2], file=sys.stderr)
        return 2
    problems = []
    for path in swift_files(sys.argv[1:]):
        problems.extend(check_file(path))
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
