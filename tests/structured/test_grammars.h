// Grammars built directly with GrammarBuilder for the matcher tests and the mask benchmark (no
// front end involved, so they test the matcher alone).
#pragma once

#include <string>
#include <vector>

#include "src/structured/grammar.h"

namespace muse::structured::testing {

// A JSON string: '"' (any code point but '"', '\\' and controls | '\\' escape)* '"'.
inline Symbol JsonString(GrammarBuilder& b) {
  const int32_t ch = b.AddRule("char");
  b.AddAlternative(ch, {*b.Utf8Class({{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}})});
  Alternative esc;
  b.AppendLiteral("\\", &esc);
  ByteSet simple;
  for (char c : std::string("\"\\/bfnrt")) simple.Add(static_cast<uint8_t>(c));
  const int32_t escape = b.AddRule("escape");
  b.AddAlternative(escape, {b.Bytes(simple)});
  ByteSet hex = ByteSet::Range('0', '9');
  hex.AddRange('a', 'f');
  hex.AddRange('A', 'F');
  const Symbol h = b.Bytes(hex);
  b.AddAlternative(escape, {b.Byte('u'), h, h, h, h});
  esc.push_back(Symbol::Rule(escape));
  b.AddAlternative(ch, esc);
  const int32_t s = b.AddRule("string");
  b.AddAlternative(s, {b.Byte('"'), b.Star(Symbol::Rule(ch)), b.Byte('"')});
  return Symbol::Rule(s);
}

// Any compact JSON value (objects, arrays, strings, integers with fraction and exponent, literals).
// Strings of one shared character rule under several length bounds and none (token masks count
// characters for the bounded ones):
//   root ::= '{' '"a":' s{0,3} ',"b":' s{2,5} ',"c":' s{1,40} ',"d":' s* ',"e":' s{4} '}'
// where s{m,n} is '"' char{m,n} '"' with JsonString's char (escapes included).
inline Grammar BoundedStringsGrammar() {
  GrammarBuilder b;
  const int32_t ch = b.AddRule("char");
  b.AddAlternative(ch, {*b.Utf8Class({{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}})});
  const int32_t escape = b.AddRule("escape");
  ByteSet simple;
  for (char c : std::string("\"\\/bfnrt")) simple.Add(static_cast<uint8_t>(c));
  b.AddAlternative(escape, {b.Bytes(simple)});
  ByteSet hex = ByteSet::Range('0', '9');
  hex.AddRange('a', 'f');
  b.AddAlternative(escape, {b.Byte('u'), b.Repeat(b.Bytes(hex), 4, 4)});
  b.AddAlternative(ch, {b.Byte('\\'), Symbol::Rule(escape)});
  auto str = [&](int min, int max) {
    return b.Choice(
        {{b.Byte('"'),
          max < 0 && min == 0 ? b.Star(Symbol::Rule(ch)) : b.Repeat(Symbol::Rule(ch), min, max),
          b.Byte('"')}},
        "str");
  };
  const int32_t root = b.AddRule("root");
  Alternative alt;
  b.AppendLiteral("{\"a\":", &alt);
  alt.push_back(str(0, 3));
  b.AppendLiteral(",\"b\":", &alt);
  alt.push_back(str(2, 5));
  b.AppendLiteral(",\"c\":", &alt);
  alt.push_back(str(1, 40));
  b.AppendLiteral(",\"d\":", &alt);
  alt.push_back(str(0, -1));
  b.AppendLiteral(",\"e\":", &alt);
  alt.push_back(str(4, 4));
  b.AppendLiteral("}", &alt);
  b.AddAlternative(root, alt);
  return *std::move(b).Finish(root);
}

inline Grammar JsonGrammar() {
  GrammarBuilder b;
  const int32_t value = b.AddRule("value");
  const Symbol str = JsonString(b);
  const int32_t number = b.AddRule("number");
  const Symbol digits = b.Plus(b.Bytes(ByteSet::Range('0', '9')));
  const int32_t integer = b.AddRule("integer");
  b.AddAlternative(integer, {b.Byte('0')});
  b.AddAlternative(integer,
                   {b.Bytes(ByteSet::Range('1', '9')), b.Star(b.Bytes(ByteSet::Range('0', '9')))});
  ByteSet e;
  e.Add('e');
  e.Add('E');
  ByteSet sign;
  sign.Add('+');
  sign.Add('-');
  const int32_t exp = b.AddRule("exp");
  b.AddAlternative(exp, {b.Bytes(e), b.Optional(b.Bytes(sign)), digits});
  const int32_t frac = b.AddRule("frac");
  b.AddAlternative(frac, {b.Byte('.'), digits});
  b.AddAlternative(number, {b.Optional(b.Byte('-')), Symbol::Rule(integer),
                            b.Optional(Symbol::Rule(frac)), b.Optional(Symbol::Rule(exp))});
  const int32_t member = b.AddRule("member");
  b.AddAlternative(member, {str, b.Byte(':'), Symbol::Rule(value)});
  const int32_t object = b.AddRule("object");
  b.AddAlternative(object, {b.Byte('{'), b.SeparatedList(Symbol::Rule(member), b.Byte(','), 0, -1),
                            b.Byte('}')});
  const int32_t array = b.AddRule("array");
  b.AddAlternative(
      array, {b.Byte('['), b.SeparatedList(Symbol::Rule(value), b.Byte(','), 0, -1), b.Byte(']')});
  for (Symbol s : {Symbol::Rule(object), Symbol::Rule(array), str, Symbol::Rule(number),
                   b.Literal("true"), b.Literal("false"), b.Literal("null")}) {
    b.AddAlternative(value, {s});
  }
  return *std::move(b).Finish(value);
}

// {"name":<string>,"city":<string>,"country":<string>} (a JSON schema's object of required string
// properties, compact).
inline Grammar StringPropertiesGrammar(const std::vector<std::string>& names = {"name", "city",
                                                                                "country"}) {
  GrammarBuilder b;
  const Symbol str = JsonString(b);
  const int32_t root = b.AddRule("root");
  Alternative alt;
  for (size_t i = 0; i < names.size(); ++i) {
    b.AppendLiteral((i == 0 ? "{\"" : ",\"") + names[i] + "\":", &alt);
    alt.push_back(str);
  }
  b.AppendLiteral("}", &alt);
  b.AddAlternative(root, alt);
  return *std::move(b).Finish(root);
}

// Balanced parentheses: S ::= '(' S ')' S | "" (nullable and recursive on both sides).
inline Grammar ParensGrammar() {
  GrammarBuilder b;
  const int32_t s = b.AddRule("s");
  b.AddAlternative(s, {b.Byte('('), Symbol::Rule(s), b.Byte(')'), Symbol::Rule(s)});
  b.AddAlternative(s, {});
  return *std::move(b).Finish(s);
}

// Left-recursive arithmetic: E ::= E '+' T | T ; T ::= T '*' F | F ; F ::= '(' E ')' | [0-9]+.
inline Grammar ExprGrammar() {
  GrammarBuilder b;
  const int32_t e = b.AddRule("e"), t = b.AddRule("t"), f = b.AddRule("f");
  b.AddAlternative(e, {Symbol::Rule(e), b.Byte('+'), Symbol::Rule(t)});
  b.AddAlternative(e, {Symbol::Rule(t)});
  b.AddAlternative(t, {Symbol::Rule(t), b.Byte('*'), Symbol::Rule(f)});
  b.AddAlternative(t, {Symbol::Rule(f)});
  b.AddAlternative(f, {b.Byte('('), Symbol::Rule(e), b.Byte(')')});
  b.AddAlternative(f, {b.Plus(b.Bytes(ByteSet::Range('0', '9')))});
  return *std::move(b).Finish(e);
}

// Chains of nullable rules: A ::= B C 'x' C ; B ::= "" | 'b' ; C ::= B B | 'c' B.
inline Grammar NullableGrammar() {
  GrammarBuilder b;
  const int32_t a = b.AddRule("a"), bb = b.AddRule("b"), c = b.AddRule("c");
  b.AddAlternative(a, {Symbol::Rule(bb), Symbol::Rule(c), b.Byte('x'), Symbol::Rule(c)});
  b.AddAlternative(bb, {});
  b.AddAlternative(bb, {b.Byte('b')});
  b.AddAlternative(c, {Symbol::Rule(bb), Symbol::Rule(bb)});
  b.AddAlternative(c, {b.Byte('c'), Symbol::Rule(bb)});
  return *std::move(b).Finish(a);
}

// UTF-8 ranges: ("é" | CJK U+4E00..U+9FFF | U+1F600..U+1F64F)+ "!".
inline Grammar Utf8Grammar() {
  GrammarBuilder b;
  const Symbol cls = *b.Utf8Class({{0xE9, 0xE9}, {0x4E00, 0x9FFF}, {0x1F600, 0x1F64F}});
  const int32_t root = b.AddRule("root");
  b.AddAlternative(root, {b.Plus(cls), b.Byte('!')});
  return *std::move(b).Finish(root);
}

// Bounded repeats and lists inside unique-parent chains and nullable recursion:
//   root ::= '[' list(word, ',', 1..4) ']' | A ;  word ::= [a-c]{1,3}
//   A ::= '<' B '>' A | "" ;  B ::= C C? ;  C ::= 'c' D | 'x' ;  D ::= D 'd' | "".
inline Grammar NestedGrammar() {
  GrammarBuilder b;
  const int32_t root = b.AddRule("root"), a = b.AddRule("a"), bb = b.AddRule("b"),
                c = b.AddRule("c"), d = b.AddRule("d");
  const Symbol word = b.Repeat(b.Bytes(ByteSet::Range('a', 'c')), 1, 3);
  b.AddAlternative(root, {b.Byte('['), b.SeparatedList(word, b.Byte(','), 1, 4), b.Byte(']')});
  b.AddAlternative(root, {Symbol::Rule(a)});
  b.AddAlternative(a, {b.Byte('<'), Symbol::Rule(bb), b.Byte('>'), Symbol::Rule(a)});
  b.AddAlternative(a, {});
  b.AddAlternative(bb, {Symbol::Rule(c), b.Optional(Symbol::Rule(c))});
  b.AddAlternative(c, {b.Byte('c'), Symbol::Rule(d)});
  b.AddAlternative(c, {b.Byte('x')});
  b.AddAlternative(d, {Symbol::Rule(d), b.Byte('d')});
  b.AddAlternative(d, {});
  return *std::move(b).Finish(root);
}

}  // namespace muse::structured::testing
