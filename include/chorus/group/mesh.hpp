#pragma once
/// \file
/// `chorus::mesh`: the ranks of a communicator as an n-dimensional grid with named axes,
/// and the communicator along any axis (torch's `DeviceMesh`, Megatron's parallel state).
///
///     chorus::mesh m(comm, {{"dp", 2}, {"tp", 2}});   // 4 ranks: rank = dp * 2 + tp
///     chorus::all_reduce(m["tp"], activations, chorus::plus{});
///     chorus::all_reduce(m["dp"], gradients, chorus::average{});
///
/// Ranks are laid out row-major, the last axis fastest (rank = sum of coordinate x stride),
/// so the last axis holds neighbouring ranks -- put the axis that needs the fastest links
/// (tensor parallelism: inside a host) last. Making a mesh is collective over `comm`: it
/// splits `comm` once per axis, in axis order. `group({...})` (several axes at once) is
/// collective too; every rank must ask for the same groups in the same order.
#include <chorus/communicator.hpp>
#include <chorus/core/error.hpp>
#include <chorus/group/split.hpp>

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chorus::inline v0 {

/// One axis of a mesh: its name and how many ranks it spans.
struct mesh_axis {
  std::string name;
  int size = 1;
};

template <any_transport Transport>
class mesh {
 public:
  using communicator_type = communicator<Transport>;

  /// The mesh of `shape` over `comm`'s ranks (the sizes' product must be `comm.size()`;
  /// names must be distinct and not empty). `comm` must outlive the mesh.
  mesh(communicator_type& comm, std::vector<mesh_axis> shape)
      : parent_(&comm), shape_(std::move(shape)) {
    long long product = 1;
    for (std::size_t i = 0; i < shape_.size(); ++i) {
      const mesh_axis& a = shape_[i];
      if (a.name.empty() || a.size < 1) {
        fail("axis " + std::to_string(i) + " ('" + a.name + "', size " + std::to_string(a.size) +
             ") needs a name and a size of at least 1");
      }
      for (std::size_t j = 0; j < i; ++j) {
        if (shape_[j].name == a.name) fail("two axes are named '" + a.name + "'");
      }
      product *= a.size;
    }
    if (shape_.empty() || product != comm.size()) {
      fail("the axes' sizes multiply to " + std::to_string(product) + " but the communicator has " +
           std::to_string(comm.size()) + " ranks");
    }
    coordinates_.resize(shape_.size());
    int rest = comm.rank();
    for (std::size_t i = shape_.size(); i-- > 0;) {
      coordinates_[i] = rest % shape_[i].size;
      rest /= shape_[i].size;
    }
    for (std::size_t i = 0; i < shape_.size(); ++i) {
      std::vector<bool> axes(shape_.size(), false);
      axes[i] = true;
      groups_.push_back({axes, make_group(axes)});
    }
  }

  /// The communicator along axis `name`: the ranks whose other coordinates equal this
  /// rank's; its rank is this rank's coordinate on the axis.
  [[nodiscard]] communicator_type& operator[](std::string_view name) {
    return *groups_[index_of(name)].comm;
  }

  /// The communicator spanning several axes at once (e.g. {"dp", "tp"}: the ranks that
  /// share every other coordinate), its ranks ordered row-major over those axes in mesh
  /// order. Collective over the mesh the first time a set is asked for; later calls return
  /// the same communicator.
  [[nodiscard]] communicator_type& group(std::initializer_list<std::string_view> names) {
    std::vector<bool> axes(shape_.size(), false);
    for (std::string_view n : names) axes[index_of(n)] = true;
    for (auto& g : groups_) {
      if (g.axes == axes) return *g.comm;
    }
    groups_.push_back({axes, make_group(axes)});
    return *groups_.back().comm;
  }

  /// This rank's coordinate on axis `name`.
  [[nodiscard]] int coordinate(std::string_view name) const { return coordinates_[index_of(name)]; }
  /// This rank's coordinates, in axis order.
  [[nodiscard]] std::span<const int> coordinates() const noexcept { return coordinates_; }
  /// The size of axis `name`.
  [[nodiscard]] int size(std::string_view name) const { return shape_[index_of(name)].size; }
  [[nodiscard]] const std::vector<mesh_axis>& shape() const noexcept { return shape_; }
  /// The rank (in the mesh's communicator) at `coordinates`, in axis order.
  [[nodiscard]] int rank_at(std::span<const int> coordinates) const {
    if (coordinates.size() != shape_.size()) fail("rank_at needs one coordinate per axis");
    int r = 0;
    for (std::size_t i = 0; i < shape_.size(); ++i) {
      if (coordinates[i] < 0 || coordinates[i] >= shape_[i].size) {
        fail("coordinate " + std::to_string(coordinates[i]) + " is outside axis '" +
             shape_[i].name + "' of size " + std::to_string(shape_[i].size));
      }
      r = r * shape_[i].size + coordinates[i];
    }
    return r;
  }
  /// Whether every group along axis `name` lies inside one host, on the hosts the
  /// transport found (`communicator::hosts()`; a transport with every rank on one host
  /// always says yes): ask it of the axis that must stay on a host's fast links (tensor
  /// parallelism), e.g. `if (!m.within_host("tp")) throw ...`. No communication.
  [[nodiscard]] bool within_host(std::string_view name) const {
    const std::span<const int> hosts = parent_->hosts();
    if (hosts.empty()) return true;
    const std::size_t axis = index_of(name);
    std::vector<int> c(shape_.size());
    for (int r = 0; r < parent_->size(); ++r) {
      int rest = r;
      for (std::size_t i = shape_.size(); i-- > 0;) {
        c[i] = rest % shape_[i].size;
        rest /= shape_[i].size;
      }
      c[axis] = 0;  // the first rank of r's group along the axis
      if (hosts[static_cast<std::size_t>(r)] != hosts[static_cast<std::size_t>(rank_at(c))]) {
        return false;
      }
    }
    return true;
  }
  /// The communicator the mesh was made over.
  [[nodiscard]] communicator_type& parent() noexcept { return *parent_; }

 private:
  struct axis_group {
    std::vector<bool> axes;
    std::unique_ptr<communicator_type> comm;
  };

  [[noreturn]] static void fail(const std::string& what) {
    throw error(errc::invalid_argument, "chorus::mesh: " + what);
  }

  std::size_t index_of(std::string_view name) const {
    for (std::size_t i = 0; i < shape_.size(); ++i) {
      if (shape_[i].name == name) return i;
    }
    std::string names;
    for (const auto& a : shape_) names += (names.empty() ? "'" : ", '") + a.name + "'";
    fail("no axis is named '" + std::string(name) + "'; the axes are " + names);
  }

  /// Splits the parent into the groups spanning `axes`: the color is the rank's position
  /// over the other axes, the key its position over `axes` (both row-major).
  std::unique_ptr<communicator_type> make_group(const std::vector<bool>& axes) {
    int color = 0;
    int key = 0;
    for (std::size_t i = 0; i < shape_.size(); ++i) {
      if (axes[i]) {
        key = key * shape_[i].size + coordinates_[i];
      } else {
        color = color * shape_[i].size + coordinates_[i];
      }
    }
    auto made = parent_->split(color, key);
    return std::make_unique<communicator_type>(std::move(*made));
  }

  communicator_type* parent_;
  std::vector<mesh_axis> shape_;
  std::vector<int> coordinates_;
  std::vector<axis_group> groups_;
};

template <class Transport>
mesh(communicator<Transport>&, std::vector<mesh_axis>) -> mesh<Transport>;

}  // namespace chorus::inline v0
