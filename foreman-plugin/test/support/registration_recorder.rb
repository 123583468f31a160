# frozen_string_literal: true

# Runs lib/foreman_pvc/register.rb against a stand-in for Foreman::Plugin
# and records the DSL calls it makes.
class RegistrationRecorder
  attr_reader :calls

  def self.record
    recorder = new
    plugin = Module.new
    plugin.define_singleton_method(:register) do |id, &block|
      recorder.calls << [:register, [id], {}]
      recorder.instance_eval(&block)
    end
    with_foreman_plugin(plugin) { load ForemanPvc::Engine.root.join('lib/foreman_pvc/register.rb').to_s }
    recorder
  end

  def self.with_foreman_plugin(plugin)
    defined_before = defined?(::Foreman)
    Object.const_set(:Foreman, Module.new) unless defined_before
    ::Foreman.const_set(:Plugin, plugin)
    yield
  ensure
    ::Foreman.send(:remove_const, :Plugin)
    Object.send(:remove_const, :Foreman) unless defined_before
  end

  def initialize
    @calls = []
  end

  def N_(text) # rubocop:disable Naming/MethodName
    text
  end

  # Every DSL call is recorded; nested blocks (security_block, settings,
  # category, describe_host) run on the recorder too.
  def method_missing(name, *args, **kwargs, &block)
    @calls << [name, args, kwargs]
    instance_eval(&block) if block
  end

  def respond_to_missing?(*)
    true
  end

  def find(name)
    @calls.select { |c| c.first == name }
  end
end
