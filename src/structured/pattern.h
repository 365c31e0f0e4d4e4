// The syntax tree shared by the regex and EBNF front ends (compile.h), and its lowering to
// GrammarBuilder calls. Both languages reduce to literals, code point classes, sequences,
// alternations, bounded/unbounded repetition and (EBNF only) rule references; writing the lowering
// once keeps their grammars alike (same class symbols, same repetition rules).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/structured/grammar.h"

namespace muse::structured::pattern {

inline constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// Sorted, disjoint, non-adjacent ranges without surrogates (D800-DFFF, which UTF-8 cannot carry).
std::vector<CodepointRange> NormalizeRanges(const std::vector<CodepointRange>& ranges);
// U+0000..U+10FFFF (less surrogates) minus `ranges` (normalized).
std::vector<CodepointRange> ComplementRanges(const std::vector<CodepointRange>& ranges);

struct Node {
  enum class Kind : uint8_t {
    kEmpty,    // the empty string
    kNothing,  // the empty language (a class matching no code point)
    kLiteral,  // `bytes` exactly
    kClass,    // one code point in `ranges` (normalized, non-empty)
    kRuleRef,  // GrammarBuilder rule `rule`
    kSeq,      // children in order
    kAlt,      // one of children
    kRepeat,   // children[0], min..max times (max < 0: unbounded)
  };
  Kind kind = Kind::kEmpty;
  std::string bytes;
  std::vector<CodepointRange> ranges;
  int32_t rule = -1;
  int min = 0;
  int max = 0;
  std::vector<Node> children;

  // The constructors simplify as they go: sequences are flattened and adjacent literals merged,
  // the empty language absorbs sequences and leaves alternations, so only a whole expression can
  // end up kNothing.
  static Node Empty() { return {}; }
  static Node Nothing();
  static Node Literal(std::string bytes);
  static Node Class(const std::vector<CodepointRange>& ranges);  // normalizes; empty -> kNothing
  static Node RuleRef(int32_t rule);
  static Node Seq(std::vector<Node> children);
  static Node Alt(std::vector<Node> children);
  static Node Repeat(Node child, int min, int max);
};

// Emits nodes into a GrammarBuilder. A class of ASCII code points becomes one byte-set symbol, any
// other class a UTF-8 rule (GrammarBuilder::Utf8Class).
class Lowerer {
 public:
  explicit Lowerer(GrammarBuilder* builder) : builder_(builder) {}

  // Appends the symbols deriving `node` to `out` (helper rules are created as needed).
  absl::Status Emit(const Node& node, Alternative* out);
  // One symbol deriving `node` (a fresh rule when it takes more than one).
  absl::StatusOr<Symbol> AsSymbol(const Node& node);
  // The alternatives of a rule deriving `node` (an alternation's branches, or `node` alone).
  absl::StatusOr<std::vector<Alternative>> Alternatives(const Node& node);

  // Names given to group rules (an alternation or sequence inside an expression).
  void set_group_name(std::string name) { group_name_ = std::move(name); }

 private:
  absl::StatusOr<Symbol> ClassSymbol(const std::vector<CodepointRange>& ranges);

  GrammarBuilder* builder_;
  std::string group_name_ = "group";
};

}  // namespace muse::structured::pattern
