#include "worker/tokenizer/decoder.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "worker/tokenizer/unicode_util.h"

namespace foak::tokenizer {
namespace {

absl::Status Build(const nlohmann::json& j, const std::string& path, const std::string& file,
                   std::vector<Decoder::Op>* ops) {
  const std::string type = j.value("type", "");
  using Op = Decoder::Op;
  if (type == "Sequence") {
    auto list = j.find("decoders");
    if (list == j.end() || !list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": ", path, ".decoders: missing or not an array"));
    }
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(Build((*list)[i], absl::StrCat(path, ".decoders[", i, "]"), file, ops));
    }
  } else if (type == "ByteLevel") {
    ops->push_back({Op::kByteLevel, "", "", 0, 0, true});
  } else if (type == "Replace") {
    auto pattern = j.find("pattern");
    if (pattern == j.end() || !pattern->contains("String")) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": ", path, ".pattern: only {\"String\": ...} patterns are supported"));
    }
    ops->push_back({Op::kReplace, (*pattern)["String"].get<std::string>(),
                    j.value("content", ""), 0, 0, true});
  } else if (type == "ByteFallback") {
    ops->push_back({Op::kByteFallback, "", "", 0, 0, true});
  } else if (type == "Fuse") {
    ops->push_back({Op::kFuse, "", "", 0, 0, true});
  } else if (type == "Strip") {
    // tokenizers' Strip removes up to `start` leading and `stop` trailing
    // copies of one character; an empty content would never stop matching.
    const std::string content = j.value("content", " ");
    if (content.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": ", path, ".content: is \"\"; expected the character to strip, e.g. \" \""));
    }
    int counts[2] = {0, 0};
    const char* keys[2] = {"start", "stop"};
    for (int k = 0; k < 2; ++k) {
      auto it = j.find(keys[k]);
      if (it == j.end() || it->is_null()) continue;
      if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
          it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
        return absl::InvalidArgumentError(absl::StrCat(file, ": ", path, ".", keys[k], " = ",
                                                       it->dump(),
                                                       "; expected a non-negative integer"));
      }
      counts[k] = static_cast<int>(it->get<int64_t>());
    }
    ops->push_back({Op::kStrip, content, "", counts[0], counts[1], true});
  } else if (type == "Metaspace") {
    const std::string scheme = j.value("prepend_scheme", "");
    const bool prepend = scheme.empty() ? j.value("add_prefix_space", true) : scheme != "never";
    ops->push_back({Op::kMetaspace, j.value("replacement", "\u2581"), "", 0, 0, prepend});
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": ", path, ": decoder type \"", type,
        "\" is not supported; supported: null, Sequence, ByteLevel, Replace (String), "
        "ByteFallback, Fuse, Strip, Metaspace"));
  }
  return absl::OkStatus();
}

// "<0xAB>" -> 0xAB, else -1.
int ByteToken(const std::string& t) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = t[static_cast<size_t>(k)];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else return -1;
  }
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::FromJson(const nlohmann::json& decoder,
                                                           const std::string& file) {
  auto d = std::make_unique<Decoder>();
  if (decoder.is_null()) {
    d->none_ = true;
    return d;
  }
  RETURN_IF_ERROR(Build(decoder, "decoder", file, &d->ops_));
  return d;
}

std::string Decoder::Decode(std::vector<std::string> tokens) const {
  if (none_) return absl::StrJoin(tokens, " ");
  for (const Op& op : ops_) {
    switch (op.kind) {
      case Op::kByteLevel: {
        std::string bytes;
        for (const std::string& t : tokens) {
          std::string mapped;
          bool ok = true;
          for (size_t i = 0; i < t.size() && ok;) {
            const int b = UnicodeToByte(NextCodepoint(t, &i));
            if (b < 0) ok = false;
            else mapped.push_back(static_cast<char>(b));
          }
          bytes.append(ok ? mapped : t);
        }
        tokens.assign(1, Utf8Lossy(bytes));
        break;
      }
      case Op::kReplace:
        for (std::string& t : tokens) t = absl::StrReplaceAll(t, {{op.a, op.b}});
        break;
      case Op::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        size_t pending_count = 0;
        const auto flush = [&] {
          if (pending_count == 0) return;
          if (IsValidUtf8(pending)) {
            out.push_back(pending);
          } else {
            for (size_t k = 0; k < pending_count; ++k) out.push_back("\xEF\xBF\xBD");
          }
          pending.clear();
          pending_count = 0;
        };
        for (std::string& t : tokens) {
          const int b = ByteToken(t);
          if (b >= 0) {
            pending.push_back(static_cast<char>(b));
            ++pending_count;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case Op::kFuse:
        tokens.assign(1, absl::StrJoin(tokens, ""));
        break;
      case Op::kStrip:
        for (std::string& t : tokens) {
          size_t begin = 0, end = t.size();
          for (int k = 0; k < op.start && t.compare(begin, op.a.size(), op.a) == 0 &&
                          begin + op.a.size() <= end; ++k) {
            begin += op.a.size();
          }
          for (int k = 0; k < op.stop && end >= begin + op.a.size() &&
                          t.compare(end - op.a.size(), op.a.size(), op.a) == 0; ++k) {
            end -= op.a.size();
          }
          t = t.substr(begin, end - begin);
        }
        break;
      case Op::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          const std::string with = (i == 0 && op.prepend) ? "" : " ";
          tokens[i] = absl::StrReplaceAll(tokens[i], {{op.a, with}});
        }
        break;
    }
  }
  return absl::StrJoin(tokens, "");
}

}  // namespace foak::tokenizer
