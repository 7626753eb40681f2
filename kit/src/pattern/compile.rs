//! From a parsed tree to a program's instructions, expanding counted
//! repetition.

use super::error::PatternError;
use super::parse::Node;
use super::program::{Inst, MAX_INSTRUCTIONS};

/// Compiles `node` into instructions that end in `Match`. A program too
/// large is refused at `offset`: the whole pattern is at fault.
pub(super) fn compile(node: &Node, offset: usize) -> Result<Vec<Inst>, PatternError> {
    let mut compiler = Compiler {
        program: Vec::new(),
        offset,
    };
    compiler.compile(node)?;
    compiler.emit(Inst::Match)?;
    Ok(compiler.program)
}

/// Turns a parsed pattern into instructions, expanding counted repetition.
struct Compiler {
    program: Vec<Inst>,
    /// Where to point errors: the whole pattern is at fault.
    offset: usize,
}

impl Compiler {
    fn too_large(&self) -> PatternError {
        PatternError {
            reason: "pattern is too large: more than 1000 instructions once counted repetitions are expanded",
            offset: self.offset,
        }
    }

    /// The counter of the next instruction.
    fn next_pc(&self) -> Result<u16, PatternError> {
        u16::try_from(self.program.len()).map_err(|_| self.too_large())
    }

    fn emit(&mut self, inst: Inst) -> Result<u16, PatternError> {
        if self.program.len() >= MAX_INSTRUCTIONS {
            return Err(self.too_large());
        }
        let pc = self.next_pc()?;
        self.program.push(inst);
        Ok(pc)
    }

    /// Points the second branch of the `Split` (or the `Jump`) at `pc` to
    /// `to`.
    fn patch(&mut self, pc: u16, to: u16) {
        match self.program.get_mut(usize::from(pc)) {
            Some(Inst::Split(_, second)) => *second = to,
            Some(Inst::Jump(target)) => *target = to,
            _ => {}
        }
    }

    fn compile(&mut self, node: &Node) -> Result<(), PatternError> {
        match node {
            Node::Empty => {}
            Node::Char(ch) => {
                self.emit(Inst::Char(*ch))?;
            }
            Node::Class { start, end } => {
                self.emit(Inst::Class {
                    start: *start,
                    end: *end,
                })?;
            }
            Node::Assert(assertion) => {
                self.emit(Inst::Assert(*assertion))?;
            }
            Node::Concat(nodes) => {
                for node in nodes {
                    self.compile(node)?;
                }
            }
            Node::Alternate(branches) => {
                // split L1, next; L1: first; jump end; next: split ...
                let mut jumps = Vec::new();
                let (last, init) = branches.split_last().unwrap_or((&Node::Empty, &[]));
                for branch in init {
                    let split = self.emit(Inst::Split(0, 0))?;
                    self.patch_first(split)?;
                    self.compile(branch)?;
                    jumps.push(self.emit(Inst::Jump(0))?);
                    let next = self.next_pc()?;
                    self.patch(split, next);
                }
                self.compile(last)?;
                let end = self.next_pc()?;
                for jump in jumps {
                    self.patch(jump, end);
                }
            }
            Node::Repeat { node, min, max } => self.repeat(node, *min, *max)?,
        }
        Ok(())
    }

    /// Points the first branch of the `Split` at `pc` to the instruction
    /// after it.
    fn patch_first(&mut self, pc: u16) -> Result<(), PatternError> {
        let next = self.next_pc()?;
        if let Some(Inst::Split(first, _)) = self.program.get_mut(usize::from(pc)) {
            *first = next;
        }
        Ok(())
    }

    fn repeat(&mut self, node: &Node, min: u32, max: Option<u32>) -> Result<(), PatternError> {
        // A body that compiles to nothing stays nothing however often it is
        // repeated: stop after one copy, so `((){1000}){1000}` costs
        // nothing instead of a million empty passes.
        let before = self.program.len();
        let mandatory = match max {
            // `x{n,}` with n > 0 is n-1 copies of x, then `L: x; split L, end`.
            None => min.saturating_sub(1),
            Some(_) => min,
        };
        for _ in 0..mandatory {
            self.compile(node)?;
            if self.program.len() == before {
                return Ok(());
            }
        }
        match max {
            None if min > 0 => {
                let body = self.next_pc()?;
                self.compile(node)?;
                let split = self.emit(Inst::Split(body, 0))?;
                let end = self.next_pc()?;
                self.patch(split, end);
            }
            None => {
                // `x*`: L: split body, end; body; jump L.
                let split = self.emit(Inst::Split(0, 0))?;
                self.patch_first(split)?;
                self.compile(node)?;
                if self.program.len() == usize::from(split) + 1 {
                    self.program.pop();
                    return Ok(());
                }
                self.emit(Inst::Jump(split))?;
                let end = self.next_pc()?;
                self.patch(split, end);
            }
            Some(max) => {
                // `x{n,m}`: m-n optional copies, each `split copy, end`.
                let mut splits = Vec::new();
                for _ in min..max {
                    let split = self.emit(Inst::Split(0, 0))?;
                    self.patch_first(split)?;
                    self.compile(node)?;
                    if self.program.len() == usize::from(split) + 1 {
                        self.program.pop();
                        break;
                    }
                    splits.push(split);
                }
                let end = self.next_pc()?;
                for split in splits {
                    self.patch(split, end);
                }
            }
        }
        Ok(())
    }
}
