#include "client/yaml_to_json.h"

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/errors.h"
#include "common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace foak::client {
namespace {

using Json = nlohmann::json;

std::string Where(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0) return "";
  return absl::StrCat("line ", mark.line + 1, ": ");
}

bool IsDigits(absl::string_view s, absl::string_view alphabet) {
  if (s.empty()) return false;
  for (char c : s) {
    if (alphabet.find(c) == absl::string_view::npos) return false;
  }
  return true;
}

// YAML 1.2 core-schema float: [-+]? ( . [0-9]+ | [0-9]+ ( . [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
bool IsCoreFloat(absl::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0;
  while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++int_digits;
  size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

// Resolves a plain (unquoted) scalar to its JSON type.
Json ResolvePlainScalar(const std::string& text) {
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") {
    return nullptr;
  }
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;

  absl::string_view body = text;
  bool negative = false;
  if (!body.empty() && (body[0] == '-' || body[0] == '+')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (IsDigits(body, "0123456789")) {
    int64_t i = 0;
    if (absl::SimpleAtoi(text, &i)) return i;
    uint64_t u = 0;
    if (!negative && absl::SimpleAtoi(body, &u)) return u;
    double d = 0;
    if (absl::SimpleAtod(text, &d)) return d;  // beyond 64 bits
  }
  if (!negative && text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'o')) {
    const bool hex = text[1] == 'x';
    const std::string digits = text.substr(2);
    if (IsDigits(digits, hex ? "0123456789abcdefABCDEF" : "01234567")) {
      errno = 0;
      const unsigned long long u = std::strtoull(digits.c_str(), nullptr, hex ? 16 : 8);
      if (errno == 0) return static_cast<uint64_t>(u);
    }
  }
  if (IsCoreFloat(text)) {
    double d = 0;
    if (absl::SimpleAtod(text, &d)) return d;
  }
  // Non-finite numbers: JSON has none; protobuf's JSON reads these strings
  // for double fields.
  const std::string lower = absl::AsciiStrToLower(body);
  if (lower == ".inf") return negative ? "-Infinity" : "Infinity";
  if (text == ".nan" || text == ".NaN" || text == ".NAN") return "NaN";
  return text;
}

absl::StatusOr<Json> Convert(const YAML::Node& node, const std::string& path) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return Json(nullptr);
    case YAML::NodeType::Scalar: {
      const std::string& tag = node.Tag();
      // "?" marks a plain scalar; "!" a quoted or block one; "!!str" asks
      // for a string explicitly.
      if (tag == "?") return ResolvePlainScalar(node.Scalar());
      return Json(node.Scalar());
    }
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        ASSIGN_OR_RETURN(Json item, Convert(node[i], absl::StrCat(path, "[", i, "]")));
        out.push_back(std::move(item));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (!it->first.IsScalar()) {
          return UsageError(absl::StrCat(Where(it->first), path.empty() ? "" : path + ": ",
                                         "a mapping key must be a plain name"));
        }
        const std::string key = it->first.Scalar();
        const std::string child = path.empty() ? key : absl::StrCat(path, ".", key);
        if (out.contains(key)) {
          return UsageError(absl::StrCat(Where(it->first), "'", child, "' is given twice"));
        }
        ASSIGN_OR_RETURN(out[key], Convert(it->second, child));
      }
      return out;
    }
  }
  return Json(nullptr);
}

}  // namespace

absl::StatusOr<nlohmann::json> YamlToJson(absl::string_view yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    const std::string where =
        e.mark.line >= 0 ? absl::StrCat("line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ")
                         : "";
    return UsageError(absl::StrCat(where, e.msg));
  }
  try {
    return Convert(root, "");
  } catch (const YAML::Exception& e) {
    return UsageError(e.what());
  }
}

}  // namespace foak::client
