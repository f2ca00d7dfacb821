//! Model cards.
