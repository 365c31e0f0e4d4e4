#include "src/structured/pattern.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"

namespace muse::structured::pattern {

namespace {

constexpr uint32_t kSurrogateLo = 0xD800;
constexpr uint32_t kSurrogateHi = 0xDFFF;

}  // namespace

std::vector<CodepointRange> NormalizeRanges(const std::vector<CodepointRange>& ranges) {
  std::vector<CodepointRange> split;
  for (CodepointRange r : ranges) {
    if (r.lo > r.hi || r.lo > kMaxCodepoint) continue;
    r.hi = std::min(r.hi, kMaxCodepoint);
    if (r.hi < kSurrogateLo || r.lo > kSurrogateHi) {
      split.push_back(r);
      continue;
    }
    if (r.lo < kSurrogateLo) split.push_back({r.lo, kSurrogateLo - 1});
    if (r.hi > kSurrogateHi) split.push_back({kSurrogateHi + 1, r.hi});
  }
  std::sort(split.begin(), split.end(),
            [](const CodepointRange& a, const CodepointRange& b) { return a.lo < b.lo; });
  std::vector<CodepointRange> out;
  for (const CodepointRange& r : split) {
    // D7FF and E000 stay separate ranges; merging them would put the surrogates back.
    if (!out.empty() && r.lo <= out.back().hi + 1 && r.lo != kSurrogateHi + 1) {
      out.back().hi = std::max(out.back().hi, r.hi);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::vector<CodepointRange> ComplementRanges(const std::vector<CodepointRange>& ranges) {
  std::vector<CodepointRange> out;
  uint32_t next = 0;  // first code point not yet covered
  for (const CodepointRange& r : ranges) {
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= kMaxCodepoint) out.push_back({next, kMaxCodepoint});
  return NormalizeRanges(out);
}

Node Node::Nothing() {
  Node n;
  n.kind = Kind::kNothing;
  return n;
}

Node Node::Literal(std::string bytes) {
  if (bytes.empty()) return Empty();
  Node n;
  n.kind = Kind::kLiteral;
  n.bytes = std::move(bytes);
  return n;
}

Node Node::Class(const std::vector<CodepointRange>& ranges) {
  Node n;
  n.ranges = NormalizeRanges(ranges);
  n.kind = n.ranges.empty() ? Kind::kNothing : Kind::kClass;
  return n;
}

Node Node::RuleRef(int32_t rule) {
  Node n;
  n.kind = Kind::kRuleRef;
  n.rule = rule;
  return n;
}

Node Node::Seq(std::vector<Node> children) {
  std::vector<Node> flat;
  auto add = [&flat](Node&& c) {
    if (c.kind == Kind::kLiteral && !flat.empty() && flat.back().kind == Kind::kLiteral) {
      flat.back().bytes += c.bytes;
    } else {
      flat.push_back(std::move(c));
    }
  };
  for (Node& c : children) {
    switch (c.kind) {
      case Kind::kEmpty:
        break;
      case Kind::kNothing:
        return Nothing();
      case Kind::kSeq:
        for (Node& g : c.children) add(std::move(g));
        break;
      default:
        add(std::move(c));
    }
  }
  if (flat.empty()) return Empty();
  if (flat.size() == 1) return std::move(flat[0]);
  Node n;
  n.kind = Kind::kSeq;
  n.children = std::move(flat);
  return n;
}

Node Node::Alt(std::vector<Node> children) {
  std::vector<Node> kept;
  for (Node& c : children) {
    if (c.kind == Kind::kNothing) continue;
    if (c.kind == Kind::kAlt) {
      for (Node& g : c.children) kept.push_back(std::move(g));
    } else {
      kept.push_back(std::move(c));
    }
  }
  if (kept.empty()) return Nothing();
  if (kept.size() == 1) return std::move(kept[0]);
  Node n;
  n.kind = Kind::kAlt;
  n.children = std::move(kept);
  return n;
}

Node Node::Repeat(Node child, int min, int max) {
  if (max == 0 || child.kind == Kind::kEmpty) return Empty();
  if (child.kind == Kind::kNothing) return min == 0 ? Empty() : Nothing();
  if (min == 1 && max == 1) return child;
  Node n;
  n.kind = Kind::kRepeat;
  n.min = min;
  n.max = max;
  n.children.push_back(std::move(child));
  return n;
}

absl::StatusOr<Symbol> Lowerer::ClassSymbol(const std::vector<CodepointRange>& ranges) {
  if (ranges.back().hi < 0x80) {
    ByteSet set;
    for (const CodepointRange& r : ranges) {
      set.AddRange(static_cast<uint8_t>(r.lo), static_cast<uint8_t>(r.hi));
    }
    return builder_->Bytes(set);
  }
  return builder_->Utf8Class(ranges);  // the builder shares one rule per distinct class
}

absl::Status Lowerer::Emit(const Node& node, Alternative* out) {
  switch (node.kind) {
    case Node::Kind::kEmpty:
      return absl::OkStatus();
    case Node::Kind::kNothing:
      return absl::InternalError("pattern lowering: the empty language inside an expression");
    case Node::Kind::kLiteral:
      builder_->AppendLiteral(node.bytes, out);
      return absl::OkStatus();
    case Node::Kind::kClass: {
      absl::StatusOr<Symbol> s = ClassSymbol(node.ranges);
      if (!s.ok()) return s.status();
      out->push_back(*s);
      return absl::OkStatus();
    }
    case Node::Kind::kRuleRef:
      out->push_back(Symbol::Rule(node.rule));
      return absl::OkStatus();
    case Node::Kind::kSeq:
      for (const Node& c : node.children) {
        if (absl::Status st = Emit(c, out); !st.ok()) return st;
      }
      return absl::OkStatus();
    case Node::Kind::kAlt: {
      absl::StatusOr<std::vector<Alternative>> alts = Alternatives(node);
      if (!alts.ok()) return alts.status();
      out->push_back(builder_->Choice(std::move(*alts), group_name_));
      return absl::OkStatus();
    }
    case Node::Kind::kRepeat: {
      absl::StatusOr<Symbol> s = AsSymbol(node.children[0]);
      if (!s.ok()) return s.status();
      const int min = node.min;
      const int max = node.max;
      if (min == 0 && max == 1) {
        out->push_back(builder_->Optional(*s));
      } else if (min == 0 && max < 0) {
        out->push_back(builder_->Star(*s));
      } else if (min == 1 && max < 0) {
        out->push_back(builder_->Plus(*s));
      } else if (min == max) {
        // Exactly n copies inline: no rule needed.
        for (int i = 0; i < min; ++i) out->push_back(*s);
      } else {
        out->push_back(builder_->Repeat(*s, min, max));
      }
      return absl::OkStatus();
    }
  }
  return absl::InternalError("pattern lowering: unknown node kind");
}

absl::StatusOr<Symbol> Lowerer::AsSymbol(const Node& node) {
  Alternative alt;
  if (absl::Status st = Emit(node, &alt); !st.ok()) return st;
  if (alt.size() == 1) return alt[0];
  std::vector<Alternative> alts;
  alts.push_back(std::move(alt));
  return builder_->Choice(std::move(alts), group_name_);
}

absl::StatusOr<std::vector<Alternative>> Lowerer::Alternatives(const Node& node) {
  std::vector<Alternative> alts;
  if (node.kind == Node::Kind::kAlt) {
    for (const Node& c : node.children) {
      Alternative alt;
      if (absl::Status st = Emit(c, &alt); !st.ok()) return st;
      alts.push_back(std::move(alt));
    }
  } else {
    Alternative alt;
    if (absl::Status st = Emit(node, &alt); !st.ok()) return st;
    alts.push_back(std::move(alt));
  }
  return alts;
}

}  // namespace muse::structured::pattern
