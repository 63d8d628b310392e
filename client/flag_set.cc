#include "client/flag_set.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/errors.h"

namespace foak::client {

FlagSet::FlagSet(std::string usage, std::string description)
    : usage_(std::move(usage)), description_(std::move(description)) {}

void FlagSet::Add(Flag flag) {
  flag.global = adding_global_;
  flags_.push_back(std::move(flag));
}

void FlagSet::AddValue(const std::string& name, char short_name, const std::string& value_name,
                       const std::string& help) {
  Add(Flag{name, short_name, value_name.empty() ? "VALUE" : value_name, help, false});
}

void FlagSet::AddRepeated(const std::string& name, char short_name, const std::string& value_name,
                          const std::string& help) {
  Add(Flag{name, short_name, value_name.empty() ? "VALUE" : value_name, help, true});
}

void FlagSet::AddBool(const std::string& name, char short_name, const std::string& help) {
  Add(Flag{name, short_name, "", help, false});
}

const FlagSet::Flag* FlagSet::Find(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const FlagSet::Flag* FlagSet::FindShort(char c) const {
  for (const Flag& f : flags_) {
    if (f.short_name != 0 && f.short_name == c) return &f;
  }
  return nullptr;
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      positional_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    const Flag* flag = nullptr;
    std::string shown;       // the flag as the user wrote it, for messages
    bool has_inline = false;  // --name=value or -ovalue
    std::string inline_value;
    if (arg.rfind("--", 0) == 0) {
      std::string name = arg.substr(2);
      if (const size_t eq = name.find('='); eq != std::string::npos) {
        has_inline = true;
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      shown = "--" + name;
      if (name == "help") {
        help_requested_ = true;
        continue;
      }
      flag = Find(name);
    } else {
      shown = arg.substr(0, 2);
      if (arg[1] == 'h' && arg.size() == 2) {
        help_requested_ = true;
        continue;
      }
      flag = FindShort(arg[1]);
      if (arg.size() > 2) {
        has_inline = true;
        inline_value = arg.substr(arg[2] == '=' ? 3 : 2);
      }
    }
    if (flag == nullptr) return UsageError(absl::StrCat("unknown flag ", shown));
    if (flag->value_name.empty()) {  // boolean
      std::string v = has_inline ? absl::AsciiStrToLower(inline_value) : "true";
      if (v != "true" && v != "false") {
        return UsageError(absl::StrCat(shown, " takes no value (or =true / =false), got '",
                                       inline_value, "'"));
      }
      values_[flag->name] = {v};
      continue;
    }
    std::string value;
    if (has_inline) {
      value = inline_value;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return UsageError(absl::StrCat(shown, " needs a value (", flag->value_name, ")"));
    }
    if (flag->repeated) {
      values_[flag->name].push_back(value);
    } else {
      values_[flag->name] = {value};
    }
  }
  return absl::OkStatus();
}

bool FlagSet::IsSet(const std::string& name) const { return values_.count(name) > 0; }

std::string FlagSet::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return fallback;
  return it->second.back();
}

std::vector<std::string> FlagSet::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

bool FlagSet::GetBool(const std::string& name) const { return Get(name, "false") == "true"; }

absl::StatusOr<int64_t> FlagSet::GetInt(const std::string& name, int64_t fallback) const {
  if (!IsSet(name)) return fallback;
  const std::string value = Get(name);
  int64_t out = 0;
  if (!absl::SimpleAtoi(value, &out)) {
    return UsageError(absl::StrCat("--", name, ": expected an integer, got '", value, "'"));
  }
  return out;
}

absl::StatusOr<double> FlagSet::GetDouble(const std::string& name, double fallback) const {
  if (!IsSet(name)) return fallback;
  const std::string value = Get(name);
  double out = 0;
  if (!absl::SimpleAtod(value, &out)) {
    return UsageError(absl::StrCat("--", name, ": expected a number, got '", value, "'"));
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> FlagSet::GetIntList(const std::string& name,
                                                          int64_t min) const {
  std::vector<int64_t> out;
  if (!IsSet(name)) return out;
  const std::string value = Get(name);
  for (absl::string_view item : absl::StrSplit(value, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(item, &v) || v < min) {
      return UsageError(absl::StrCat("--", name, ": '", value,
                                     "' is not a comma-separated list of integers >= ", min));
    }
    out.push_back(v);
  }
  return out;
}

int FlagSet::FindFirstPositional(const std::vector<std::string>& args) const {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") return i + 1 < args.size() ? static_cast<int>(i + 1) : -1;
    if (arg.size() < 2 || arg[0] != '-') return static_cast<int>(i);
    const Flag* flag = nullptr;
    bool has_inline = false;
    if (arg.rfind("--", 0) == 0) {
      has_inline = arg.find('=') != std::string::npos;
      flag = Find(arg.substr(2, arg.find('=') == std::string::npos ? std::string::npos
                                                                     : arg.find('=') - 2));
    } else {
      has_inline = arg.size() > 2;
      flag = FindShort(arg[1]);
    }
    // A known flag with a separate value swallows the next argument.
    if (flag != nullptr && !flag->value_name.empty() && !has_inline) ++i;
  }
  return -1;
}

std::string FlagSet::Help() const {
  auto left = [](const Flag& f) {
    std::string s = f.short_name != 0 ? absl::StrCat("-", std::string(1, f.short_name), ", ")
                                      : std::string("    ");
    absl::StrAppend(&s, "--", f.name);
    if (!f.value_name.empty()) absl::StrAppend(&s, " ", f.value_name);
    return s;
  };
  size_t width = 14;
  for (const Flag& f : flags_) width = std::max(width, left(f).size());
  auto section = [&](bool global) {
    std::string out;
    for (const Flag& f : flags_) {
      if (f.global != global) continue;
      std::string l = left(f);
      absl::StrAppend(&out, "  ", l, std::string(width - l.size() + 2, ' '), f.help,
                      f.repeated ? " (repeatable)" : "", "\n");
    }
    return out;
  };
  std::string out = absl::StrCat("Usage: ", usage_, "\n");
  if (!description_.empty()) absl::StrAppend(&out, "\n", description_, "\n");
  const std::string local = section(false);
  const std::string help_line = absl::StrCat("  -h, --help", std::string(width - 10 + 2, ' '),
                                             "show this help\n");
  absl::StrAppend(&out, "\nFlags:\n", local, help_line);
  const std::string global = section(true);
  if (!global.empty()) absl::StrAppend(&out, "\nGlobal flags:\n", global);
  return out;
}

}  // namespace foak::client
