"""The ground every other package stands on: errors written for people, the ``Section`` base of
every recipe section, what a metric's name says, machine facts and the precision and dtype
decision, module-name targets, names of models on this machine or the Hub, processes, quiet
defaults, the folders peftkit writes, the data formats, numeric limits. Imports no other peftkit
package (docs/architecture.md).
"""
