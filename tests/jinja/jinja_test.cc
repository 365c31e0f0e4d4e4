// Language features of the chat-template interpreter (semantics of @huggingface/jinja).
#include <gtest/gtest.h>

#include <string>

#include "tests/jinja/jinja_test_util.h"

namespace muse::jinja {
namespace {

using testing::RenderOrError;

TEST(JinjaTest, TextExpressionsAndComments) {
  EXPECT_EQ(RenderOrError("Hello {{ name }}!{# comment #}", R"({"name": "world"})"),
            "Hello world!");
  EXPECT_EQ(
      RenderOrError("{{ 'a' ~ 1 ~ true }}|{{ none }}|{{ undefined_var }}|{{ 1.0 }}|{{ 7 / 2 }}"),
      "a1true|||1.0|3.5");
  EXPECT_EQ(RenderOrError("{{ \"q\\\"\\n\" }}"), "q\"\n");
  EXPECT_EQ(RenderOrError("{{ [1, 'a', none] }}{{ {'k': [true]} }}"),
            "[1, \"a\", null]{\"k\": [true]}");
}

TEST(JinjaTest, WhitespaceControlTrimAndLstripBlocks) {
  // trim_blocks removes the newline after a tag; lstrip_blocks removes indentation before it.
  EXPECT_EQ(RenderOrError("{% if true %}\n  yes\n    {% endif %}\nend\n"), "  yes\nend");
  EXPECT_EQ(RenderOrError("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(RenderOrError("a \n{%- if true -%}\n b {%- endif %}"), "ab");
  EXPECT_EQ(RenderOrError("x {#- c -#} y"), "xy");
  // {{ }} is not lstripped; the transformers `generation` tag is removed.
  EXPECT_EQ(RenderOrError("  {{ 1 }}{% generation %}g{% endgeneration %}"), "  1g");
}

TEST(JinjaTest, IfElifElse) {
  const std::string src = "{% if x > 2 %}big{% elif x == 2 %}two{% else %}small{% endif %}";
  EXPECT_EQ(RenderOrError(src, R"({"x": 3})"), "big");
  EXPECT_EQ(RenderOrError(src, R"({"x": 2})"), "two");
  EXPECT_EQ(RenderOrError(src, R"({"x": 1})"), "small");
}

TEST(JinjaTest, ForLoopVariablesAndElse) {
  EXPECT_EQ(
      RenderOrError(
          "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.length }}"
          "{{ 'F' if loop.first }}{{ 'L' if loop.last }}{{ x }};{% endfor %}",
          R"({"xs": ["a", "b"]})"),
      "1022Fa;2112Lb;");
  EXPECT_EQ(RenderOrError("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(RenderOrError("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}",
                          R"({"d": {"b": 1, "a": 2}})"),
            "b=1,a=2,");
  EXPECT_EQ(RenderOrError("{% for k in d %}{{ k }}{% endfor %}", R"({"d": {"x": 1, "y": 2}})"),
            "xy");
  EXPECT_EQ(RenderOrError("{% for x in [1,2,3,4] if x is even %}{{ x }}{% endfor %}"), "24");
  EXPECT_EQ(
      RenderOrError(
          "{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
      "13");
  EXPECT_EQ(RenderOrError(
                "{% for x in [1,2,3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "1");
  // Assignments inside a loop do not leak out of it.
  EXPECT_EQ(RenderOrError("{% set y = 0 %}{% for x in [1] %}{% set y = x %}{% endfor %}{{ y }}"),
            "0");
}

TEST(JinjaTest, SetNamespaceAndTuples) {
  EXPECT_EQ(RenderOrError(
                "{% set ns = namespace(n=0, s='') %}{% for x in [1,2,3] %}{% set ns.n = ns.n + x %}"
                "{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(RenderOrError("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(RenderOrError("{% set block %}x{{ 1 + 1 }}{% endset %}[{{ block }}]"), "[x2]");
}

TEST(JinjaTest, MacrosAndCallBlocks) {
  EXPECT_EQ(
      RenderOrError("{% macro greet(name, greeting='Hi') %}{{ greeting }} {{ name }}{% endmacro %}"
                    "{{ greet('Ann') }}/{{ greet('Bob', greeting='Yo') }}"),
      "Hi Ann/Yo Bob");
  EXPECT_EQ(RenderOrError(
                "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}in{% endcall %}"),
            "<in>");
  EXPECT_EQ(
      RenderOrError(
          "{% macro f() %}{{ kwargs.a }}{{ varargs | length }}{% endmacro %}{{ f(1, 2, a=3) }}"),
      "32");
}

TEST(JinjaTest, Filters) {
  EXPECT_EQ(
      RenderOrError(
          "{{ '  x  ' | trim }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'hello world' | title }}"
          "|{{ 'hELLO' | capitalize }}|{{ 'abc' | length }}"),
      "x|AB|ab|Hello World|HELLO|3");
  EXPECT_EQ(
      RenderOrError(
          "{{ [1,2,3] | first }}{{ [1,2,3] | last }}{{ [1,2,3] | join(', ') }}|{{ [3,1,2] | sort }}"
          "|{{ [1,1,2] | unique | list }}|{{ [1,2] | reverse }}"),
      "131, 2, 3|[1, 2, 3]|[1, 2]|[2, 1]");
  EXPECT_EQ(RenderOrError("{{ x | default('d') }}{{ '' | default('e', true) }}{{ 0 | string }}{{ "
                          "'42' | int + 1 }}"),
            "de043");
  EXPECT_EQ(
      RenderOrError(
          "{{ 'a-b-c' | replace('-', '+') }}{{ -3 | abs }}{{ 2.5 | round }}{{ 2.567 | round(2) }}"),
      "a+b+c32.02.57");
  EXPECT_EQ(RenderOrError("{{ d | items | list }}", R"({"d": {"a": 1}})"), "[[\"a\", 1]]");
  EXPECT_EQ(
      RenderOrError(
          "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='c') | join }}"
          "{{ ms | rejectattr('role', 'equalto', 'user') | map(attribute='c') | join }}",
          R"({"ms": [{"role": "user", "c": "u1"}, {"role": "bot", "c": "b"}, {"role": "user", "c": "u2"}]})"),
      "u1u2b");
  EXPECT_EQ(RenderOrError("{{ ['a', 'b', 'c'] | reject('equalto', 'b') | join(',') }}"), "a,c");
}

TEST(JinjaTest, ToJsonMatchesPythonSpacing) {
  const std::string ctx =
      R"({"v": {"a": [1, 2.5, "é\"\n"], "b": {}, "c": [], "d": null, "e": true}})";
  EXPECT_EQ(RenderOrError("{{ v | tojson }}", ctx),
            R"({"a": [1, 2.5, "é\"\n"], "b": {}, "c": [], "d": null, "e": true})");
  EXPECT_EQ(RenderOrError("{{ v | tojson(indent=2) }}", ctx),
            "{\n  \"a\": [\n    1,\n    2.5,\n    \"é\\\"\\n\"\n  ],\n  \"b\": {},\n  \"c\": [],\n "
            " \"d\": null,\n"
            "  \"e\": true\n}");
  EXPECT_EQ(RenderOrError("{{ 'é😀' | tojson(ensure_ascii=true) }}"), R"("\u00e9\ud83d\ude00")");
  EXPECT_EQ(RenderOrError("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true, separators=(',', ':')) }}"),
            R"({"a":2,"b":1})");
}

TEST(JinjaTest, TestsAndMembership) {
  EXPECT_EQ(
      RenderOrError(
          "{{ x is defined }}{{ y is undefined }}{{ n is none }}{{ s is string }}{{ 1 is number }}"
          "{{ d is mapping }}{{ l is iterable }}{{ s is sequence }}{{ t is boolean }}{{ t is true "
          "}}"
          "{{ t is false }}{{ 3 is odd }}",
          R"({"x": 1, "n": null, "s": "s", "d": {}, "l": [], "t": true})"),
      "truetruetruetruetruetruetruetruetruetruefalsetrue");
  EXPECT_EQ(RenderOrError("{{ 'a' in 'cat' }}{{ 2 in [1, 2] }}{{ 'k' in d }}{{ 'z' not in d }}{{ 1 "
                          "in undefined_x }}",
                          R"({"d": {"k": 1}})"),
            "truetruetruetruefalse");
}

TEST(JinjaTest, OperatorsAndSlicing) {
  EXPECT_EQ(RenderOrError(
                "{{ 7 // 2 }}{{ -7 // 2 }}{{ 7 % 3 }}{{ 2 ** 3 }}{{ 1 + 2 * 3 }}{{ (1 + 2) * 3 }}"),
            "3-41879");
  EXPECT_EQ(RenderOrError("{{ not true or 1 < 2 and 'x' }}{{ 'y' if false else 'n' }}"), "xn");
  EXPECT_EQ(RenderOrError("{{ xs[::-1] }}{{ xs[1:] }}{{ xs[:-1] }}{{ xs[-1] }}{{ 'hello'[1:3] }}{{ "
                          "'héllo'[::-1] }}",
                          R"({"xs": [1, 2, 3]})"),
            "[3, 2, 1][2, 3][1, 2]3elolléh");
  EXPECT_EQ(RenderOrError("{{ m.role }}{{ m['role'] }}{{ m.missing.deeper is undefined }}",
                          R"({"m": {"role": "u"}})"),
            "uutrue");
}

TEST(JinjaTest, StringAndDictMethods) {
  EXPECT_EQ(
      RenderOrError(
          "{{ ' a '.strip() }}|{{ ' a '.lstrip() }}|{{ ' a '.rstrip() }}|{{ 'a,b,,c'.split(',') }}"
          "|{{ ' x  y '.split() }}|{{ 'ab'.startswith('a') }}{{ 'ab'.endswith(('x', 'b')) }}"
          "|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|{{ 'a b'.title() }}|{{ 'aaa'.replace('a', 'b', 2) "
          "}}"),
      "a|a | a|[\"a\", \"b\", \"\", \"c\"]|[\"x\", \"y\"]|truetrue|ABab|A B|bba");
  EXPECT_EQ(
      RenderOrError("{{ d.get('a') }}{{ d.get('z', 'dflt') }}{{ d.get('z') }}{{ d.keys() | list }}"
                    "{{ d.values() | list }}",
                    R"({"d": {"a": 1}})"),
      "1dflt[\"a\"][1]");
}

TEST(JinjaTest, GlobalsRangeAndStrftime) {
  EXPECT_EQ(RenderOrError("{{ range(3) }}{{ range(1, 7, 2) }}{{ range(3, 0, -1) }}"),
            "[0, 1, 2][1, 3, 5][3, 2, 1]");
  const std::string year = RenderOrError("{{ strftime_now('%Y') }}");
  EXPECT_EQ(year.size(), 4u);
  EXPECT_EQ(RenderOrError("{{ True }}{{ False }}{{ None }}"), "truefalse");
}

TEST(JinjaTest, UndefinedSemanticsLikeReference) {
  // Attribute access on undefined yields undefined; operators on it fail.
  EXPECT_EQ(RenderOrError("[{{ x.y.z }}]"), "[]");
  EXPECT_EQ(RenderOrError("{{ x + 1 }}"),
            "ERROR: jinja: render error: Cannot perform operation + on undefined values");
  EXPECT_EQ(RenderOrError("{{ x == none }}"), "true");  // loose equality, as in the reference
}

TEST(JinjaTest, UnicodeStringOperations) {
  EXPECT_EQ(RenderOrError("{{ s | length }}|{{ s | upper }}|{{ '\u00a0x\u3000' | trim }}",
                          R"({"s": "éa😀"})"),
            "4|ÉA😀|x");
}

}  // namespace
}  // namespace muse::jinja
