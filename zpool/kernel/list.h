// SPDX-License-Identifier: GPL-2.0-only
// Intrusive doubly linked lists, the kernel's list_head made type-safe.
//
// An element joins a list through a ListNode<Tag> base class; the Tag names the list, so one
// struct can sit on several lists at once (zbud's page header is on a buddy list and on the LRU):
//
//   struct zbud_header : kc::ListNode<BuddyList>, kc::ListNode<LruList> { ... };
//   kc::IntrusiveList<zbud_header, BuddyList> buddied;
//
// Node <-> element conversions are static_casts (no offsetof arithmetic). The lists are not
// thread-safe: the owner's lock protects them. A node knows whether it is linked, so a validator
// can check membership and a double insertion is caught (BUG_ON) instead of corrupting two lists.
#ifndef ZPOOL_KERNEL_LIST_H_
#define ZPOOL_KERNEL_LIST_H_

#include <cstddef>

#include "zpool/kernel/kernel.h"

namespace kc {

template <class Tag = void>
struct ListNode {
  ListNode *next_ = nullptr;
  ListNode *prev_ = nullptr;

  bool linked() const { return next_ != nullptr; }
};

template <class T, class Tag = void>
class IntrusiveList {
 public:
  using Node = ListNode<Tag>;

  IntrusiveList() { head_.next_ = head_.prev_ = &head_; }
  IntrusiveList(const IntrusiveList &) = delete;
  IntrusiveList &operator=(const IntrusiveList &) = delete;

  bool empty() const { return head_.next_ == &head_; }
  size_t size() const { return size_; }

  T *front() const { return empty() ? nullptr : elem(head_.next_); }
  T *back() const { return empty() ? nullptr : elem(head_.prev_); }

  void push_front(T *item) { insert_after(&head_, node(item)); }
  void push_back(T *item) { insert_after(head_.prev_, node(item)); }

  // Unlinks item, which must be on this list.
  void remove(T *item) {
    Node *n = node(item);
    BUG_ON(!n->linked());
    n->prev_->next_ = n->next_;
    n->next_->prev_ = n->prev_;
    n->next_ = n->prev_ = nullptr;
    --size_;
  }

  T *pop_front() {
    T *item = front();
    if (item) remove(item);
    return item;
  }
  T *pop_back() {
    T *item = back();
    if (item) remove(item);
    return item;
  }

  void move_to_front(T *item) {
    remove(item);
    push_front(item);
  }

  // O(n): for validators and tests.
  bool contains(const T *item) const {
    for (const Node *n = head_.next_; n != &head_; n = n->next_)
      if (n == node(item)) return true;
    return false;
  }

  // Calls fn(T*) for each element from front to back; fn may remove the element it was given.
  template <class Fn>
  void for_each(Fn &&fn) const {
    for (Node *n = head_.next_, *next = n->next_; n != &head_; n = next, next = n->next_)
      fn(elem(n));
  }
  // Same, from back to front.
  template <class Fn>
  void for_each_reverse(Fn &&fn) const {
    for (Node *n = head_.prev_, *prev = n->prev_; n != &head_; n = prev, prev = n->prev_)
      fn(elem(n));
  }

  static bool is_linked(const T *item) { return node(item)->linked(); }

 private:
  static Node *node(T *item) { return static_cast<Node *>(item); }
  static const Node *node(const T *item) { return static_cast<const Node *>(item); }
  static T *elem(Node *n) { return static_cast<T *>(n); }
  static T *elem(const Node *n) { return static_cast<T *>(const_cast<Node *>(n)); }

  void insert_after(Node *pos, Node *n) {
    BUG_ON(n->linked());  // already on a list: inserting again would corrupt both
    n->prev_ = pos;
    n->next_ = pos->next_;
    pos->next_->prev_ = n;
    pos->next_ = n;
    ++size_;
  }

  mutable Node head_;
  size_t size_ = 0;
};

}  // namespace kc

#endif  // ZPOOL_KERNEL_LIST_H_
