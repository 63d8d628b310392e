// UTF-8 helpers the tokenizers share, written to match what Hugging Face
// tokenizers (Rust) does at the byte level:
//  - Utf8Lossy replaces each maximal invalid subsequence with one U+FFFD,
//    as Rust's String::from_utf8_lossy (ByteLevel decoding) does;
//  - ByteToUnicode is GPT-2's bytes_to_unicode table: printable Latin-1 bytes
//    map to themselves, the other 68 bytes to U+0100.. so that every byte is a
//    visible character and BPE never sees spaces or control bytes.
#ifndef FOAK_WORKER_TOKENIZER_UNICODE_UTIL_H_
#define FOAK_WORKER_TOKENIZER_UNICODE_UTIL_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace foak::tokenizer {

// Length in bytes of the valid UTF-8 sequence at s[i], or 0 if invalid.
size_t ValidUtf8SequenceLength(std::string_view s, size_t i);
bool IsValidUtf8(std::string_view s);
// `s` with every maximal invalid subsequence replaced by U+FFFD.
std::string Utf8Lossy(std::string_view s);
// Appends the UTF-8 encoding of `cp`.
void AppendUtf8(uint32_t cp, std::string* out);
// Decodes the (valid) UTF-8 character at s[*i] and advances *i past it.
uint32_t NextCodepoint(std::string_view s, size_t* i);

// GPT-2's byte -> character table, each entry UTF-8 encoded (1 or 2 bytes).
const std::array<std::string, 256>& ByteToUnicode();
// Inverse of ByteToUnicode for a code point; -1 when it is not in the table.
int UnicodeToByte(uint32_t cp);

}  // namespace foak::tokenizer

#endif  // FOAK_WORKER_TOKENIZER_UNICODE_UTIL_H_
