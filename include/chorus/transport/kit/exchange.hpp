#pragma once
/// \file
/// `chorus::blob_exchange`: how the ranks of a process transport find each other at start-up
/// (shared-memory segment names, UCX worker addresses), and the one that goes through a
/// bootstrap store.
#include <chorus/bootstrap/store.hpp>
#include <chorus/core/deadline.hpp>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

/// Called during a transport's construction with this rank's blob; must return every rank's
/// blob, in rank order (an all-gather), and must not return before every rank has called
/// it. Blobs may hold any bytes. `chorus::bootstrap` stores provide one (`store_exchange`).
using blob_exchange = std::function<std::vector<std::string>(const std::string& mine)>;

/// A `blob_exchange` through a bootstrap store: round k of the exchange uses the keys
/// `<prefix>/<k>/<rank>`. The store is taken by value (`any_store` copies share the store).
inline blob_exchange store_exchange(bootstrap::any_store store, std::string prefix, int rank,
                                    int size, duration timeout) {
  auto round = std::make_shared<int>(0);
  return [store, prefix = std::move(prefix), rank, size, timeout,
          round](const std::string& mine) mutable {
    const auto blobs =
        bootstrap::all_gather_blob(store, prefix + "/" + std::to_string((*round)++), rank, size,
                                   bootstrap::to_bytes(mine), deadline::after(timeout));
    std::vector<std::string> out;
    out.reserve(blobs.size());
    for (const auto& b : blobs) out.push_back(bootstrap::as_string(b));
    return out;
  };
}

}  // namespace chorus::inline v0
